"""A hook that keeps mmengine training checkpoints loadable with ``torch.load(weights_only=True)``.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10.7 pickles the message hub
(``HistoryBuffer`` objects with bound methods, numpy arrays and scalars) into every checkpoint, so its
own checkpoints fail to load for resuming, testing or ``init_model`` (open-mmlab/mmengine#1655).
:class:`SafeCheckpointHook` (``custom_hooks=[dict(type='SafeCheckpointHook')]``) stores the message hub
as plain tensors / lists / dicts when saving and rebuilds it when loading, so checkpoints hold only
what the weights-only unpickler accepts; nothing else in the checkpoint changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.registry import HOOKS

__all__ = ["SafeCheckpointHook", "from_weights_only_safe", "to_weights_only_safe"]

_BUFFER = "__history_buffer__"
_NDARRAY = "__ndarray__"


def to_weights_only_safe(value: Any) -> Any:
    """Recursively replace ``HistoryBuffer`` / numpy arrays and scalars by tagged tensors / Python numbers."""
    if isinstance(value, HistoryBuffer):
        log, count = value.data
        return {
            _BUFFER: True,
            "log": torch.from_numpy(np.array(log)),
            "count": torch.from_numpy(np.array(count)),
            "max_length": int(value.max_length),
        }
    if isinstance(value, np.ndarray):
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((k, to_weights_only_safe(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value)(to_weights_only_safe(v) for v in value)
    return value


def from_weights_only_safe(value: Any) -> Any:
    """Inverse of :func:`to_weights_only_safe` (untagged values pass through)."""
    if isinstance(value, dict):
        if value.get(_BUFFER) is True:
            return HistoryBuffer(value["log"].tolist(), value["count"].tolist(), value["max_length"])
        if set(value) == {_NDARRAY}:
            return value[_NDARRAY].numpy()
        return type(value)((k, from_weights_only_safe(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return type(value)(from_weights_only_safe(v) for v in value)
    return value


@HOOKS.register_module()
class SafeCheckpointHook(Hook):
    """Convert the checkpoint's ``message_hub`` to weights-only-safe types on save and back on load."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Make ``checkpoint['message_hub']`` weights-only safe (in place)."""
        if "message_hub" in checkpoint:
            checkpoint["message_hub"] = to_weights_only_safe(checkpoint["message_hub"])
        if "meta" in checkpoint:
            checkpoint["meta"] = to_weights_only_safe(checkpoint["meta"])

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Rebuild ``HistoryBuffer`` / numpy values of a loaded checkpoint (in place)."""
        for key in ("message_hub", "meta"):
            if key in checkpoint:
                checkpoint[key] = from_weights_only_safe(checkpoint[key])
