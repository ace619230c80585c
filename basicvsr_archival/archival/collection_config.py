"""The settings of a collection run: an archival config plus its ``cluster`` and ``engine`` sections.

``cluster = dict(method="per_video"|"single"|"kmeans"|"label", k=None, max_videos_per_cluster=None,
seed=0, iters_per_video=..., max_iters=..., max_seconds=None, threads=1)``: how videos are grouped
(see :mod:`.cluster`) and each cluster's fine-tuning budget, ``min(iters_per_video * videos,
max_iters)`` iterations (``max_seconds`` only as a recorded safety cap: a wall-clock limit makes
results depend on load). ``threads`` pins torch's intra-op threads in every task, so that both
engines give the same bits. ``engine = dict(max_retries=2)``: retries of a failed task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from mmengine.config import Config

from basicvsr_archival.utils.ffmpeg import PathLike

from .cluster import ClusterSettings
from .job_config import ArchivalConfig, ConfigError, load_archival_config, read_config

_BUDGET_KEYS = ("iters_per_video", "max_iters", "max_seconds", "threads")


@dataclass(frozen=True)
class CollectionSettings:
    """Clustering, per-cluster budget, thread pinning and retries of a collection run."""

    cluster: ClusterSettings
    iters_per_video: int = 20
    max_iters: int = 200
    max_seconds: float | None = None
    threads: int = 1
    max_retries: int = 2

    def __post_init__(self) -> None:
        """Validate the budget fields."""
        for name, low in (("iters_per_video", 1), ("max_iters", 1), ("threads", 1), ("max_retries", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                prefix = "engine" if name == "max_retries" else "cluster"
                raise ConfigError(f"{prefix}.{name} must be an int >= {low}, got {v!r}")
        if self.max_seconds is not None and not (
            isinstance(self.max_seconds, int | float) and self.max_seconds > 0
        ):
            raise ConfigError(f"cluster.max_seconds must be > 0 or None, got {self.max_seconds!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly settings (recorded in the catalog)."""
        d = asdict(self)
        d["cluster"] = self.cluster.to_dict()
        return d


def load_collection_config(
    config: PathLike | Config | Mapping[str, Any], cfg_options: Mapping[str, Any] | None = None
) -> tuple[ArchivalConfig, CollectionSettings]:
    """Read an archival config with ``cluster`` / ``engine`` sections; bad values raise one line."""
    if isinstance(config, Config):
        cfg = config
    elif isinstance(config, Mapping):
        cfg = Config(dict(config))
    else:
        cfg = read_config(config, ConfigError)
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    name = Path(cfg.filename).stem if cfg.filename else "config"
    archival = replace(load_archival_config(cfg), name=name)
    cluster = dict(cfg.get("cluster") or {})
    engine = dict(cfg.get("engine") or {})
    budget = {k: cluster.pop(k) for k in _BUDGET_KEYS if k in cluster}
    unknown = sorted(set(engine) - {"max_retries"})
    if unknown:
        raise ConfigError(f"{name}: unknown engine settings {unknown}")
    try:
        settings = CollectionSettings(ClusterSettings.from_dict(cluster), **budget, **engine)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return archival, settings
