"""The settings of the per-video fine-tuning (``finetune`` in an archival config), validated."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .package import ArchiveError

LR_SCHEDULES = ("cosine", "constant")
_INT_MINIMA = dict(
    max_iters=0, clip_length=2, patch_size=16, batch_size=1, num_workers=0, held_out_frames=0, eval_frames=0,
    checkpoint_interval=1, log_interval=1,
)  # fmt: skip

_FLOAT_RANGES = {  # name: (low, high, low allowed, wording)
    "max_seconds": (0.0, math.inf, False, "> 0"),
    "lr": (0.0, math.inf, False, "> 0"),
    "eta_min_ratio": (0.0, 1.0, True, "in [0, 1]"),
}


class FinetuneError(ArchiveError):
    """Invalid fine-tuning settings, an unusable base checkpoint or a work dir that cannot be resumed."""


@dataclass(frozen=True)
class FinetuneSettings:
    """Budget and recipe of the per-video fine-tuning (see the archival configs for meanings)."""

    enabled: bool = True
    max_iters: int = 2000
    max_seconds: float = 3600.0
    clip_length: int = 15
    patch_size: int = 256
    lr: float = 1e-4
    lr_schedule: str = "cosine"
    eta_min_ratio: float = 0.1
    batch_size: int = 1
    num_workers: int = 0
    augment: bool = False
    frozen: tuple[str, ...] = ("spynet",)
    held_out_frames: int = 0
    eval_frames: int = 10
    checkpoint_interval: int = 200
    log_interval: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        """Validate the fields."""
        for name, low in _INT_MINIMA.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise FinetuneError(f"finetune.{name} must be an int >= {low}, got {v!r}")
        for name, (low, high, low_ok, text) in _FLOAT_RANGES.items():
            v = getattr(self, name)
            number = isinstance(v, int | float) and not isinstance(v, bool)
            if not (number and (low < v or (low_ok and v == low)) and v <= high):
                raise FinetuneError(f"finetune.{name} must be a number {text}, got {v!r}")
        for name in ("enabled", "augment"):
            if not isinstance(getattr(self, name), bool):
                raise FinetuneError(f"finetune.{name} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise FinetuneError(f"finetune.seed must be an int, got {self.seed!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise FinetuneError(
                f"finetune.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )
        if not isinstance(self.frozen, list | tuple) or not all(isinstance(f, str) for f in self.frozen):
            raise FinetuneError(
                f"finetune.frozen must be a list of parameter name fragments, got {self.frozen!r}"
            )
        object.__setattr__(self, "frozen", tuple(self.frozen))

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> FinetuneSettings:
        """Build from a config mapping; unknown keys are an error."""
        unknown = sorted(set(cfg) - {f.name for f in fields(cls)})
        if unknown:
            raise FinetuneError(f"unknown finetune setting(s) {unknown}")
        return cls(**dict(cfg))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict."""
        d = asdict(self)
        d["frozen"] = list(self.frozen)
        return d

    @property
    def active_iters(self) -> int:
        """Iterations to run (0 when fine-tuning is disabled)."""
        return self.max_iters if self.enabled else 0
