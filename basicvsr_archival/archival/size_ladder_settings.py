"""The settings of a collection's model-size ladder (``model.size_ladder`` in an archival config), validated.

See :mod:`.size_ladder` for the method. ``model.size_ladder = dict(sizes=["c8n1", "c16n2"],
views_per_month=1.0, quality_tolerance_db=0.1, prices="ncs2023", throughput_profile=None,
device="cpu", precision="fp32", horizon_days=365)``: the model sizes fine-tuned per cluster
(:data:`.throughput.MODEL_SIZES`), the expected retrievals per video and month, how far below the
best mean PSNR a size may be and still be chosen, the price table (:func:`.prices.load_prices`), a
throughput profile file (None: measured once per store), the restore device and precision priced,
and the TCO horizon in days. Absent or empty: no ladder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .billing import CostModelError
from .package import ArchiveError
from .prices import prices_path
from .restore_settings import PRECISIONS
from .throughput import MODEL_SIZES, model_size_name

KEY = "model.size_ladder"
DEVICES = ("cpu", "cuda")


class SizeLadderError(ArchiveError):
    """Invalid ``model.size_ladder`` settings."""


def _number(name: str, value: Any, low: float, strict: bool) -> float:
    """``value`` as a finite float >= ``low`` (> when ``strict``); else one line naming the key."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        raise SizeLadderError(
            f"{KEY}.{name} must be a number {'>' if strict else '>='} {low:g}, got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class SizeLadderSettings:
    """``model.size_ladder``: sizes fine-tuned per cluster and how the cheapest good-enough one is priced."""

    sizes: tuple[str, ...]
    views_per_month: float = 1.0
    quality_tolerance_db: float = 0.1
    prices: str = "ncs2023"
    throughput_profile: str | None = None
    device: str = "cpu"
    precision: str = "fp32"
    horizon_days: float = 365.0

    def __post_init__(self) -> None:
        """Validate every field (one-line error naming the key); sizes are kept smallest first."""
        sizes = self.sizes
        if isinstance(sizes, str) or not isinstance(sizes, list | tuple) or not sizes:
            raise SizeLadderError(
                f"{KEY}.sizes must be a non-empty list of {list(MODEL_SIZES)}, got {sizes!r}"
            )
        bad = [s for s in sizes if not isinstance(s, str) or s not in MODEL_SIZES]
        if bad or len(set(sizes)) != len(sizes):
            raise SizeLadderError(f"{KEY}.sizes must be distinct names of {list(MODEL_SIZES)}, got {sizes!r}")
        object.__setattr__(self, "sizes", tuple(s for s in MODEL_SIZES if s in sizes))
        object.__setattr__(
            self, "views_per_month", _number("views_per_month", self.views_per_month, 0, False)
        )
        tol = _number("quality_tolerance_db", self.quality_tolerance_db, 0, False)
        object.__setattr__(self, "quality_tolerance_db", tol)
        object.__setattr__(self, "horizon_days", _number("horizon_days", self.horizon_days, 0, True))
        if not isinstance(self.prices, str) or not self.prices:
            raise SizeLadderError(f"{KEY}.prices must be a price table name or path, got {self.prices!r}")
        try:
            prices_path(self.prices)
        except CostModelError as exc:
            raise SizeLadderError(f"{KEY}.prices: {exc}") from None
        if self.throughput_profile is not None and not Path(str(self.throughput_profile)).is_file():
            raise SizeLadderError(f"{KEY}.throughput_profile: {self.throughput_profile} not found")
        if self.device not in DEVICES:
            raise SizeLadderError(f"{KEY}.device must be one of {DEVICES}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise SizeLadderError(f"{KEY}.precision must be one of {PRECISIONS}, got {self.precision!r}")

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any] | None) -> SizeLadderSettings | None:
        """Settings from the config mapping; None when absent or empty; unknown keys are an error."""
        if cfg is None or (isinstance(cfg, Mapping) and not cfg):
            return None
        if not isinstance(cfg, Mapping):
            raise SizeLadderError(f"{KEY} must be a dict, got {cfg!r}")
        unknown = sorted(set(cfg) - {f.name for f in fields(cls)})
        if unknown:
            raise SizeLadderError(f"{KEY}: unknown key(s) {unknown}")
        if "sizes" not in cfg:
            raise SizeLadderError(f"{KEY}.sizes is required (a list of {list(MODEL_SIZES)})")
        return cls(**dict(cfg))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        d = asdict(self)
        d["sizes"] = list(self.sizes)
        return d

    def check_base(self, generator: Mapping[str, Any], has_base: bool) -> None:
        """c64n7 is never trained from scratch: it needs a base checkpoint of the config's generator size."""
        if "c64n7" in self.sizes and not (has_base and model_size_name(generator) == "c64n7"):
            raise SizeLadderError(
                f"{KEY}.sizes: c64n7 needs base_checkpoint with a c64n7 model.generator (it is not "
                "fine-tuned from scratch)"
            )
