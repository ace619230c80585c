"""The settings of a study (:mod:`.study`): the ladder, the TCO comparison and the prices, read from a config.

A study config is an archival config plus the sections ``study`` (:class:`StudySettings`), ``tco``
(:class:`TcoSettings`) and ``cost`` (:class:`~.cost.CostModel`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mmengine.config import Config

from basicvsr_archival.utils.ffmpeg import PathLike

from .cost import CostModel
from .job_config import ArchivalConfig, load_archival_config, read_config
from .package import ArchiveError

VARIANTS = ("full", "bicubic", "sr_base", "sr_finetuned")
SR_VARIANTS = VARIANTS[1:]
LABELS = {"full": "full-res encode", "bicubic": "LR + bicubic", "sr_base": "LR + base SR",
          "sr_finetuned": "LR + fine-tuned SR"}  # fmt: skip
BD_METHODS = ("pchip", "cubic")
MATCH_MODES = ("crf", "psnr", "vmaf")


class StudyError(ArchiveError):
    """Invalid study settings, or a work dir made with other measurement settings."""


# ------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class StudySettings:
    """The ladder (``study`` config section): scales x CRFs, options, VMAF, cropping, base pre-training."""

    scales: tuple[int, ...] = (2,)
    crfs: tuple[int, ...] = (23, 28, 33)
    variants: tuple[str, ...] = VARIANTS
    vmaf: bool = True
    crop_multiple: int | None = None
    keep_videos: bool = False
    bd_method: str = "pchip"
    base_pretrain: dict[str, Any] | None = None
    sr_aware_budgets: tuple[int, ...] | None = None  # --sr-aware: CRFs whose uniform payload is a budget

    def __post_init__(self) -> None:
        """Validate and normalise the fields (a ``base_pretrain`` without a video means none)."""
        unknown = sorted(set(self.variants) - set(VARIANTS))
        pre = self.base_pretrain if (self.base_pretrain or {}).get("video") is not None else None
        object.__setattr__(self, "scales", tuple(int(x) for x in self.scales))
        object.__setattr__(self, "crfs", tuple(sorted({int(c) for c in self.crfs})))
        object.__setattr__(self, "variants", tuple(v for v in VARIANTS if v in set(self.variants)))
        object.__setattr__(self, "base_pretrain", pre)
        if (budgets := self.sr_aware_budgets) is not None:
            object.__setattr__(self, "sr_aware_budgets", tuple(sorted({int(c) for c in budgets})))
        checks = [
            (self.scales and all(x in (2, 4) for x in self.scales),
             f"scales must be a non-empty list of 2 and/or 4, got {self.scales}"),
            (self.crfs, "crfs must list at least one CRF"),
            (not unknown and "full" in self.variants and len(self.variants) > 1,
             f"variants must hold 'full' and at least one of {SR_VARIANTS} (unknown: {unknown})"),
            (self.bd_method in BD_METHODS, f"bd_method must be one of {BD_METHODS}, got {self.bd_method!r}"),
            (self.crop_multiple is None or int(self.crop_multiple) >= 1,
             f"crop_multiple must be >= 1 or None, got {self.crop_multiple}"),
            (pre is None or Path(str(pre["video"])).is_file(),
             f"base_pretrain.video: {(pre or {}).get('video')!r} is not a file"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise StudyError(f"study.{msg}")


@dataclass(frozen=True)
class TcoSettings:
    """The cost comparison (``tco`` config section); the prices are the ``cost`` section."""

    horizon_days: float = 365.0
    cluster_size: int = 1
    model_shared_by: int | None = None
    original_crf: int | None = None
    scale: int | None = None
    match: str = "crf"
    match_tolerance: float = 0.0
    interval_days: tuple[float, float, int] = (1.0, 3650.0, 61)
    cpu_usd_per_hour: float | None = None
    throughput_profile: str | None = None

    def __post_init__(self) -> None:
        """Validate the fields."""
        lo, hi, num = self.interval_days
        object.__setattr__(self, "interval_days", (float(lo), float(hi), int(num)))
        checks = [
            (0 < float(lo) < float(hi) and int(num) >= 2,
             f"interval_days must be (min > 0, max > min, num >= 2), got {self.interval_days}"),
            (self.match in MATCH_MODES, f"match must be one of {MATCH_MODES}, got {self.match!r}"),
            (int(self.cluster_size) >= 1 and int(self.model_shared_by or 1) >= 1,
             "cluster_size and model_shared_by must be >= 1"),
            (float(self.horizon_days) > 0, f"horizon_days must be > 0, got {self.horizon_days}"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise StudyError(f"tco.{msg}")

    @property
    def shared_by(self) -> int:
        """Videos sharing one fine-tuned model (``model_shared_by``, default ``cluster_size``)."""
        return int(self.model_shared_by or self.cluster_size)


@dataclass
class Study:
    """A loaded study config: the archival settings plus the ladder, TCO settings and prices."""

    cfg: dict[str, Any]
    archival: ArchivalConfig
    settings: StudySettings
    tco: TcoSettings
    cost: CostModel
    path: str = "config"


def _section(cls: type, cfg: Mapping[str, Any], name: str) -> Any:
    """Dataclass ``cls`` from config section ``name``; unknown keys are an error."""
    sec = dict(cfg.get(name) or {})
    unknown = sorted(set(sec) - {f.name for f in fields(cls)})
    if unknown:
        raise StudyError(f"unknown {name} setting(s) {unknown}")
    try:
        return cls(**sec)
    except (TypeError, ValueError) as exc:
        raise StudyError(f"{name}: {exc}") from None


def load_study(config: PathLike, cfg_options: Mapping[str, Any] | None = None) -> Study:
    """Read a study config (an archival config plus ``study``, ``tco`` and ``cost`` sections)."""
    p = Path(config)
    cfg = read_config(p, StudyError)
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    raw = cfg.to_dict()
    settings, tco = _section(StudySettings, raw, "study"), _section(TcoSettings, raw, "tco")
    try:
        cost = CostModel.from_config(dict(raw.get("cost") or {}))
    except ValueError as exc:
        raise StudyError(f"{p}: cost: {exc}") from None
    arch = archival_config(raw, settings.scales[0], settings.crfs[0])
    study = Study(raw, arch, settings, tco, cost, str(p))
    if tco.original_crf is not None and tco.original_crf not in settings.crfs:
        raise StudyError(f"{p}: tco.original_crf {tco.original_crf} is not one of study.crfs {settings.crfs}")
    if tco.scale is not None and tco.scale not in settings.scales:
        raise StudyError(f"{p}: tco.scale {tco.scale} is not one of study.scales {settings.scales}")
    return study


def archival_config(
    raw: Mapping[str, Any], scale: int, crf: int, base: Path | None = None, finetune: bool = True
) -> ArchivalConfig:
    """The archive job's settings at one ladder point (scale, CRF, base checkpoint)."""
    opts: dict[str, Any] = {"codec.scale": scale, "codec.crf": crf, "codec.bitrate": None,
                            "model.generator.upscale_factor": scale}  # fmt: skip
    if base is not None:
        opts["base_checkpoint"] = str(base)
    if not finetune:
        opts["finetune.enabled"] = False
    return load_archival_config(Config(copy.deepcopy(dict(raw))), opts)
