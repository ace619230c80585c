"""Thread-count independence: run a block of PyTorch CPU ops on one intra-op thread."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_cpu_thread(x: torch.Tensor) -> Iterator[None]:
    """Run the block on one intra-op thread when ``x`` is on the CPU: results independent of thread count.

    Some PyTorch CPU ops round differently depending on how their intra-op threads split the work:
    bilinear ``F.interpolate`` (1-ulp differences between 1 and 2 threads, torch 2.13) and MKL's
    GEMM (at 16 threads), which made restored frames differ by 1 LSB with ``OMP_NUM_THREADS``; on
    one thread every element is computed the same way. Meant for cheap or memory-bound ops (the
    resizes cost a few ms per frame); the previous thread count is restored on exit.
    """
    threads = torch.get_num_threads()
    if x.device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def pinned_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (None: unchanged); the count is put back."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
