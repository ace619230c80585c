"""Config loading shared by ``tools/train.py``, ``tools/test.py`` and the benchmarks.

``--cfg-options`` keys are merged with mmengine's ``Config.merge_from_dict``. A key without a dot that
also names a field of a dataloader's dataset (``data_root``, ``gt_folder``, ``lq_folder``, ...) is
additionally written into every such dataset, so ``--cfg-options data_root=/data/REDS`` moves all
splits at once (mmengine alone would only change the unused top-level variable).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmengine.config import Config

from basicvsr_archival.errors import ConfigError

__all__ = [
    "DATALOADERS",
    "TRAIN_KEYS",
    "ConfigError",
    "check_trainable",
    "load_config",
    "propagate_dataset_options",
    "set_work_dir",
]

DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")
TRAIN_KEYS = ("train_dataloader", "train_cfg", "optim_wrapper")  # what mmengine's Runner.train needs


def _datasets(cfg: Config) -> list[dict]:
    """Every dataset dict of the dataloaders, including ones wrapped by e.g. ``RepeatDataset``."""
    found = []
    for loader in DATALOADERS:
        node = (cfg.get(loader) or {}).get("dataset")
        while isinstance(node, dict):
            found.append(node)
            node = node.get("dataset")
    return found


def propagate_dataset_options(cfg: Config, options: dict[str, Any]) -> list[str]:
    """Copy dot-less ``options`` into each dataset dict with a field of that name; returns the keys used."""
    used = []
    for key, value in options.items():
        if "." in key:
            continue
        for ds in _datasets(cfg):
            if key in ds:
                ds[key] = value
                used.append(key)
    return sorted(set(used))


def load_config(path: str | os.PathLike, cfg_options: dict[str, Any] | None = None) -> Config:
    """Read a config file, merge ``cfg_options`` and propagate dataset fields (see module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: config file not found")
    cfg = Config.fromfile(str(p))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        propagate_dataset_options(cfg, cfg_options)
    return cfg


def set_work_dir(cfg: Config, config_path: str | os.PathLike, work_dir: str | None) -> str:
    """Work dir priority: ``--work-dir``, then ``cfg.work_dir``, then ``./work_dirs/<config name>``."""
    if work_dir:
        cfg.work_dir = str(work_dir)
    elif not cfg.get("work_dir"):
        cfg.work_dir = str(Path("work_dirs") / Path(config_path).stem)
    return cfg.work_dir


def check_trainable(cfg: Config, config_path: str | os.PathLike) -> None:
    """Raise :class:`ConfigError` unless ``cfg`` has a training part (``TRAIN_KEYS``)."""
    missing = [k for k in TRAIN_KEYS if not cfg.get(k)]
    if missing:
        raise ConfigError(
            f"{config_path}: not a training config (no {', '.join(missing)}); "
            "train with one that has them, e.g. configs/tiny_reds_demo_train.py"
        )
