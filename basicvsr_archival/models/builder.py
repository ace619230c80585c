"""The one model builder: a restorer from its model config, weights loaded strictly, on a device.

Used by the inference API (``apis.init_model``: the demo, ONNX export), archive restores
(``archival/restore.py``) and fine-tuning (``archival/finetune.py``). Checkpoint files are read by
the one safe reader, :func:`basicvsr_archival.utils.checkpoint.read_state_dict` (``weights_only``
torch.load; not mmengine's ``load_checkpoint``, which pickles fully and logs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from basicvsr_archival.errors import CheckpointMismatchError
from basicvsr_archival.registry import MODELS
from basicvsr_archival.utils.checkpoint import read_state_dict

PathLike = str | os.PathLike
_MAX_LISTED_KEYS = 3


def _listed(keys: list[str]) -> str:
    """The first few keys, comma-separated, with an ellipsis if there are more."""
    more = ", ..." if len(keys) > _MAX_LISTED_KEYS else ""
    return ", ".join(keys[:_MAX_LISTED_KEYS]) + more


def describe_state_mismatch(model: nn.Module, state: Mapping[str, Any]) -> str | None:
    """How ``state``'s keys/shapes differ from ``model``'s (``3 missing keys (a, b, c); ...``), or None."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_listed(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches ({_listed(shapes)})")
    hint = ""
    if missing and state and all(f"generator.{k}" in own for k in state):
        hint = " - looks like a bare generator state dict: save it with the 'generator.' key prefix"
    return "; ".join(parts) + hint


def load_state(model: nn.Module, state: Mapping[str, Any], where: str, subset: bool = False) -> None:
    """Load ``state`` into ``model`` strictly (``subset``: only the model's keys are taken from it).

    Raises :class:`CheckpointMismatchError` (``<where>: checkpoint does not fit the model of the
    config: ...``) when names or shapes differ.
    """
    if subset:
        state = {k: state[k] for k in model.state_dict() if k in state}
    detail = describe_state_mismatch(model, state)
    if detail is None:
        try:
            model.load_state_dict(dict(state), strict=True)
            return
        except (RuntimeError, TypeError) as exc:  # e.g. a non-tensor entry
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    raise CheckpointMismatchError(f"{where}: checkpoint does not fit the model of the config: {detail}")


def build_restorer(
    model_cfg: Mapping[str, Any],
    weights: PathLike | Mapping[str, Any] | None = None,
    *,
    seed: int | None = None,
    subset: bool = False,
    device: str | torch.device | None = None,
    where: str | None = None,
) -> nn.Module:
    """Build the restorer of ``model_cfg``; load ``weights`` (a checkpoint file or a state dict) strictly.

    ``seed`` seeds the initialisation without touching the global RNG state (the initial weights of
    fine-tuning, the reference initialisation of archives trained from scratch); ``weights=None``
    keeps the initialisation. ``subset`` takes only the model's keys from ``weights`` (a base
    checkpoint holding more). ``device`` moves the model there. Returned in training mode, as built.
    A mismatch raises :class:`CheckpointMismatchError` naming ``where`` (default: the file).
    """
    import basicvsr_archival.models  # noqa: F401  (registers the networks)

    if seed is None:
        model = MODELS.build(dict(model_cfg))
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MODELS.build(dict(model_cfg))
    if weights is not None:
        if isinstance(weights, Mapping):
            load_state(model, weights, where or "state dict", subset)
        else:
            load_state(model, read_state_dict(weights), where or os.fspath(weights), subset)
    if device is not None:
        model.to(device)
    return model
