"""The settings of an archive job (an archival config): codec, model, base, fine-tuning, storage, restore."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmengine.config import Config

from basicvsr_archival.errors import first_line
from basicvsr_archival.utils.ffmpeg import PathLike

from . import codec as codec_mod
from .codec import CodecSettings
from .finetune_settings import FinetuneSettings
from .model_storage import StorageSettings
from .package import ArchiveError, to_jsonable
from .restore_settings import RestoreSettings
from .size_ladder_settings import SizeLadderSettings
from .sr_aware_settings import SrAwareSettings


class ConfigError(ArchiveError):
    """An archival config is missing, unreadable or inconsistent."""


@dataclass
class ArchivalConfig:
    """Validated settings of an archive job (from an mmengine config file)."""

    codec: CodecSettings
    model: dict[str, Any]
    base_checkpoint: Path | None
    base_allow_extra_keys: bool
    finetune: FinetuneSettings
    storage: StorageSettings
    restore: RestoreSettings
    name: str = "config"
    drop_audio: bool = False  # archive without the source's audio streams (recorded in the manifest)
    sr_aware: SrAwareSettings = field(default_factory=SrAwareSettings)  # ``codec.sr_aware``
    size_ladder: SizeLadderSettings | None = None  # ``model.size_ladder`` (collections only)

    def sr_aware_dict(self) -> dict[str, Any]:
        """``{'sr_aware': settings}`` when SR-aware encoding is on, else ``{}`` (older records unchanged)."""
        return {"sr_aware": self.sr_aware.to_dict()} if self.sr_aware.enabled else {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of every setting (the manifest's ``settings``)."""
        return {
            "config_name": self.name,
            "codec": self.codec.to_dict(),
            "model": to_jsonable(self.model),
            "base_checkpoint": str(self.base_checkpoint) if self.base_checkpoint else None,
            "base_allow_extra_keys": self.base_allow_extra_keys,
            "finetune": self.finetune.to_dict(),
            "storage": self.storage.to_dict(),
            "restore": self.restore.to_dict(),
            "drop_audio": self.drop_audio,
            **self.sr_aware_dict(),
            **({"size_ladder": self.size_ladder.to_dict()} if self.size_ladder else {}),
        }

    def fingerprint(self) -> str:
        """SHA-256 of the settings that shape the work products (budgets, logging and restore excluded)."""
        ft = {k: v for k, v in self.finetune.to_dict().items() if k not in _RESUMABLE_FINETUNE_KEYS}
        d = {"codec": self.codec.to_dict(), "model": to_jsonable(self.model), "finetune": ft}
        d |= self.sr_aware_dict()
        d["base"] = str(self.base_checkpoint) if self.base_checkpoint else None
        if self.drop_audio:  # only when set: work dirs made before the option existed still resume
            d["drop_audio"] = True
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


_RESUMABLE_FINETUNE_KEYS = (
    "max_iters",
    "max_seconds",
    "checkpoint_interval",
    "log_interval",
    "num_workers",
    "eval_frames",
)


def read_config(path: PathLike, error: type[ArchiveError]) -> Config:
    """The mmengine ``Config`` of a file; a missing or unreadable one raises ``error`` with one line."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: config file not found")
    try:
        return Config.fromfile(str(p))
    except Exception as exc:  # mmengine raises many kinds
        raise error(f"{p}: cannot read config ({first_line(exc)})") from None


def load_archival_config(
    config: PathLike | Config | Mapping[str, Any], cfg_options: Mapping[str, Any] | None = None
) -> ArchivalConfig:
    """Read and validate an archival config (file, ``Config`` or mapping); ``cfg_options`` are merged in."""
    if isinstance(config, Config):
        cfg, name = config, Path(config.filename or "config").stem
    elif isinstance(config, Mapping):
        cfg, name = Config(dict(config)), "config"
    else:
        cfg, name = read_config(config, ConfigError), Path(config).stem
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    where = name
    missing = [k for k in ("codec", "model") if k not in cfg]
    if missing:
        raise ConfigError(f"{where}: config lacks {missing}")
    try:
        codec_cfg = dict(cfg.codec)
        sr_aware = SrAwareSettings.from_dict(codec_cfg.pop("sr_aware", None))
        codec = CodecSettings.from_dict(codec_cfg)
        if sr_aware.enabled:
            sr_aware.check_codec(codec)
        finetune = FinetuneSettings.from_dict(dict(cfg.get("finetune") or {}))
        storage = StorageSettings.from_dict(dict(cfg.get("storage") or {}))
        restore = RestoreSettings.from_dict(dict(cfg.get("restore") or {}))
    except (ArchiveError, codec_mod.CodecError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {first_line(exc)}") from None
    model = cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else dict(cfg.model)
    try:
        ladder = SizeLadderSettings.from_dict(model.pop("size_ladder", None))
    except ArchiveError as exc:
        raise ConfigError(f"{where}: {first_line(exc)}") from None
    gen = model.get("generator") or {}
    factor = int(gen.get("upscale_factor", 4))
    if factor != codec.scale:
        raise ConfigError(
            f"{where}: codec.scale={codec.scale} but the model upscales x{factor} "
            "(set model.generator.upscale_factor to the codec scale)"
        )
    if codec.scale == 1:
        raise ConfigError(f"{where}: codec.scale=1 leaves nothing to super-resolve; use 2 or 4")
    model.pop("init_cfg", None)
    base = cfg.get("base_checkpoint")
    base_path = Path(base) if base else None
    try:
        storage.resolved_mode(base_path is not None)
        if ladder is not None:
            ladder.check_base(gen, base_path is not None)
            if finetune.eval_frames < 1:
                raise ArchiveError("model.size_ladder compares sizes by PSNR: set finetune.eval_frames > 0")
    except ArchiveError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return ArchivalConfig(
        codec,
        model,
        base_path,
        bool(cfg.get("base_allow_extra_keys", False)),
        finetune,
        storage,
        restore,
        name,
        bool(cfg.get("drop_audio", False)),
        sr_aware,
        ladder,
    )


def stored_model_config(model: Mapping[str, Any]) -> dict[str, Any]:
    """The model config as archived: no external weight files (the archive holds every weight)."""
    out = json.loads(json.dumps(to_jsonable(model)))
    out.pop("init_cfg", None)
    if isinstance(out.get("generator"), dict):
        out["generator"]["spynet_pretrained"] = None
    return out
