"""Loading mmengine's full training checkpoints with torch >= 2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default. mmengine 0.10.7 calls ``torch.load``
without ``weights_only`` (open-mmlab/mmengine#1655), and its checkpoints pickle the message hub
(``HistoryBuffer`` objects holding bound methods), so resuming, or testing a checkpoint written by
training, fails with "Weights only load failed". :func:`trusted_torch_load` restores the old
default inside a ``with`` block. Use it only for checkpoints you trust (your own runs): a full
pickle can execute code when loaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["trusted_torch_load"]


@contextlib.contextmanager
def trusted_torch_load() -> Iterator[None]:
    """Within the block, ``torch.load`` defaults to ``weights_only=False`` (explicit arguments still win)."""
    original = torch.load

    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original
