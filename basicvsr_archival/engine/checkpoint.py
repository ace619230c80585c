"""Loading mmengine's full training checkpoints with torch >= 2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default. mmengine 0.10.7 calls ``torch.load``
without ``weights_only`` (open-mmlab/mmengine#1655), and its checkpoints pickle the message hub
(``HistoryBuffer`` objects holding bound methods), so resuming, or testing a checkpoint written by
training, fails with "Weights only load failed". :func:`trusted_torch_load` restores the old
default inside a ``with`` block. Use it only for checkpoints you trust (your own runs): a full
pickle can execute code when loaded.

:func:`resume_checkpoint` picks the checkpoint to resume a work dir from: the one mmengine's
``last_checkpoint`` names, looked up in the work dir itself (it stores an absolute path, stale once
the folder moved), or the newest intact earlier one when a kill cut it short.
"""

from __future__ import annotations

import contextlib
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = ["checkpoint_problem", "resume_checkpoint", "trusted_torch_load"]


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


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint ``path`` cannot be read (missing, truncated, a CRC mismatch), or None if intact.

    torch saves zip archives with a CRC-32 per member: every member is read back and checked.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except FileNotFoundError:
        return "missing"
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        return f"truncated or corrupt: {exc}"
    return f"corrupt: member {bad} fails its CRC check" if bad is not None else None


def _iteration(path: Path) -> int:
    """N of ``iter_N.pth`` (-1 for other names)."""
    m = re.fullmatch(r"iter_(\d+)\.pth", path.name)
    return int(m.group(1)) if m else -1


def resume_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint to resume the mmengine run in ``work_dir`` from, or None (no checkpoint: start over).

    ``last_checkpoint`` names the latest checkpoint by absolute path; the file is looked up in
    ``work_dir`` itself, so a moved work dir resumes too. A truncated or corrupt checkpoint (a kill
    during a save) is skipped for the newest intact ``iter_N.pth``, with one warning line on stderr;
    with none intact the answer is None, also with a warning.
    """
    marker = Path(work_dir) / "last_checkpoint"
    if not marker.is_file():
        return None
    latest = marker.parent / Path(marker.read_text().strip()).name
    problem = checkpoint_problem(latest)
    if problem is None:
        return latest
    for ckpt in sorted(marker.parent.glob("iter_*.pth"), key=_iteration, reverse=True):
        if ckpt != latest and checkpoint_problem(ckpt) is None:
            _warn(f"{latest}: checkpoint is {problem}; resuming from the earlier {ckpt.name}")
            return ckpt
    _warn(f"{latest}: checkpoint is {problem} and no earlier one is intact; starting over")
    return None


def _warn(message: str) -> None:
    """One ``warning: ...`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
