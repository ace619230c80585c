"""Reading checkpoint files safely (``torch.load(weights_only=True)``) with one-line errors naming the file.

torch's own message for a file it cannot read advises that ``weights_only=False`` "will likely
succeed", also for files that are no checkpoint at all (random bytes, text), where it does not. The
message here says what the file is: not a PyTorch checkpoint, a damaged (truncated) one, or one
holding Python objects a safe load refuses.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from basicvsr_archival.errors import CheckpointReadError

PathLike = str | os.PathLike
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6
_PICKLE_PROTOCOLS = (2, 3, 4, 5)  # the legacy format: a pickle (protocol 2 from torch.save)


def _first_sentence(text: str) -> str:
    """The first line of ``text``, cut after its first sentence."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first.split(". ")[0].rstrip(".")


def _unpickler_detail(text: str) -> str | None:
    """torch's WeightsUnpickler reason (``Unsupported operand 189``, ...) from its long message, if any."""
    match = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    return _first_sentence(match.group(1)) if match else None


def describe_load_error(path: PathLike, exc: BaseException) -> str:
    """One line saying why ``torch.load(path, weights_only=True)`` failed with ``exc``, naming the file."""
    p = Path(path)
    text = str(exc)
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        return f"{p}: cannot read checkpoint ({err.strerror or err})"
    if not head:
        return f"{p}: not a PyTorch checkpoint (the file is empty)"
    is_zip = head.startswith(_ZIP_MAGIC)
    is_pickle = head[0] == 0x80 and len(head) > 1 and head[1] in _PICKLE_PROTOCOLS
    if not (is_zip or is_pickle):
        return f"{p}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)"
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if unsafe:
        return (
            f"{p}: checkpoint holds a Python object ({unsafe.group(1)}) that a safe (weights-only) load "
            "refuses: save the state dict of tensors instead"
        )
    detail = _unpickler_detail(text) or _first_sentence(text) or type(exc).__name__
    return f"{p}: damaged or truncated PyTorch checkpoint ({detail})"


def load_checkpoint_file(path: PathLike) -> Any:
    """``torch.load(path, map_location='cpu', weights_only=True)``; CheckpointReadError on failure."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointReadError(f"{p}: checkpoint file not found")
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises UnpicklingError, RuntimeError, KeyError, EOFError, ...
        raise CheckpointReadError(describe_load_error(p, exc)) from None


def read_state_dict(path: PathLike) -> dict[str, Any]:
    """The state dict of a checkpoint file ('state_dict' entry or the whole dict, 'module.' stripped)."""
    ckpt = load_checkpoint_file(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CheckpointReadError(f"{path}: checkpoint holds no state dict (got {type(ckpt).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items()}
