"""Training-engine helpers: process-group set-up and CPU-compatible distributed model wrappers."""

from .ddp import DistributedDataParallel, SeparateDistributedDataParallel, drop_cpu_device_ids
from .launcher import init_distributed

__all__ = [
    "DistributedDataParallel",
    "SeparateDistributedDataParallel",
    "drop_cpu_device_ids",
    "init_distributed",
]
