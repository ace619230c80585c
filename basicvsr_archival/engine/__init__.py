"""Training-engine helpers: process-group set-up, CPU-compatible DDP wrappers, checkpoint hook."""

from .checkpoint import trusted_torch_load
from .config import ConfigError, check_trainable, load_config, propagate_dataset_options, set_work_dir
from .ddp import (
    DistributedDataParallel,
    SeparateDistributedDataParallel,
    drop_cpu_device_ids,
    use_cpu_compatible_wrapper,
)
from .hooks import SafeCheckpointHook, from_weights_only_safe, to_weights_only_safe
from .launcher import finalize_distributed, init_distributed

__all__ = [
    "ConfigError",
    "DistributedDataParallel",
    "SafeCheckpointHook",
    "SeparateDistributedDataParallel",
    "check_trainable",
    "drop_cpu_device_ids",
    "finalize_distributed",
    "from_weights_only_safe",
    "init_distributed",
    "load_config",
    "propagate_dataset_options",
    "set_work_dir",
    "to_weights_only_safe",
    "trusted_torch_load",
    "use_cpu_compatible_wrapper",
]
