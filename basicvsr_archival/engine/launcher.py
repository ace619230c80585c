"""Process-group set-up for ``tools/train.py`` / ``tools/test.py``, including CPU-only (gloo) runs.

mmengine's ``pytorch`` launcher (``init_dist``) calls ``torch.cuda.set_device`` and defaults to NCCL,
which fails with CPU-only torch. :func:`init_distributed` initialises the group itself with gloo when no
GPU is usable; mmengine's ``Runner.setup_env`` then sees ``torch.distributed.is_initialized()`` and
skips its own initialisation (the runner keeps ``launcher='pytorch'``, so it still wraps the model
and uses distributed samplers).
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
from mmengine.dist import init_dist

__all__ = ["REQUIRED_ENV", "finalize_distributed", "init_distributed"]

# variables torchrun sets for every worker
REQUIRED_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def init_distributed(launcher: str, backend: str | None = None, timeout_s: int = 1800) -> tuple[int, int]:
    """Initialise the default process group for ``launcher`` and return ``(rank, world_size)``.

    1. ``launcher='none'``: nothing to do, returns ``(0, 1)``.
    2. ``launcher='pytorch'`` (torchrun): reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
       With CUDA available, defers to mmengine's ``init_dist`` (NCCL, one GPU per local rank);
       otherwise calls ``torch.distributed.init_process_group('gloo', init_method='env://')``.
    3. An already initialised group is reused.
    """
    if launcher == "none":
        return 0, 1
    if launcher != "pytorch":
        raise ValueError(f"unsupported launcher {launcher!r}: use 'none' or 'pytorch' (torchrun)")
    missing = [k for k in REQUIRED_ENV if k not in os.environ]
    if missing:
        raise RuntimeError(f"--launcher pytorch needs torchrun's environment; missing {', '.join(missing)}")
    if not dist.is_initialized():
        if torch.cuda.is_available() and backend in (None, "nccl"):
            init_dist("pytorch", backend=backend or "nccl", timeout=datetime.timedelta(seconds=timeout_s))
        else:
            dist.init_process_group(
                backend=backend or "gloo",
                init_method="env://",
                rank=int(os.environ["RANK"]),
                world_size=int(os.environ["WORLD_SIZE"]),
                timeout=datetime.timedelta(seconds=timeout_s),
            )
    return dist.get_rank(), dist.get_world_size()


def finalize_distributed() -> None:
    """Wait for every rank, then destroy the default process group (no-op when none is initialised).

    Without this a rank can exit while another still talks to it, and gloo aborts that rank at shutdown.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
