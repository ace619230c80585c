"""Per-video storage policy: for each video, the cheapest option that meets a quality floor (issue 15).

Options of a video (:class:`PlanVideo`): the **original** (the source file as given, or a
full-resolution re-encode: a study's ``full`` point at ``tco.original_crf``) and each **SR archive**
(LR stream + model share + manifest; a study's ``sr_finetuned`` / ``sr_base`` points, or a store's
archive), each with its bytes, billed objects, quality, restore and fine-tuning seconds.

Decision at an access rate of ``v`` views per month (interval ``I = days_per_month / v``, inf at 0):

1. eligible SR options: quality >= floor, the floor being ``policy.min_quality`` when given, else
   the original's quality minus ``policy.tolerance`` (PSNR dB or VMAF points, as the study's ``match``);
2. every option is priced in its cheapest tier by :meth:`.cost.CostModel.compare` over
   ``policy.horizon_days`` (restores at the compute price of the device they were measured on);
3. the choice is the cheapest of the original and the eligible SR options;
4. the video's break-even rate: the highest ``v`` at which some eligible SR option is still cheaper
   than the original, ``days_per_month / I*`` with ``I*`` from :meth:`.cost.CostComparison.break_even`
   (``never`` -> 0, ``always`` -> inf).

Access rates: ``access.csv`` (header ``id,views_per_month``) or a Zipf model ``zipf:s=1.1,mean=2.0``
(:func:`zipf_access`: the video of popularity rank ``k`` gets ``v_k = mean * n * k^-s / sum_j j^-s``;
ranks are a seeded permutation of the ids).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .billing import BilledObject, sr_archive_objects
from .cost import ArchiveScenario, CostModel, OptionCost
from .package import ArchiveError

METRICS = ("psnr", "vmaf")


class PlanError(ArchiveError):
    """Bad access data, policy or plan input."""


@dataclass(frozen=True)
class Policy:
    """The quality floor and the storage assumptions of a plan."""

    metric: str = "psnr"
    tolerance: float = 0.5
    min_quality: float | None = None
    horizon_days: float = 365.0
    packing: str = "packed_cold"
    rewrite_days: float = math.inf

    def __post_init__(self) -> None:
        """Validate the fields (one line naming the key)."""
        if self.metric not in METRICS:
            raise PlanError(f"policy.metric must be one of {METRICS}, got {self.metric!r}")
        if not (float(self.tolerance) >= 0 and float(self.horizon_days) > 0):
            raise PlanError("policy.tolerance must be >= 0 and policy.horizon_days > 0")


@dataclass(frozen=True)
class PlanOption:
    """One way to keep a video: bytes charged, billed objects, quality and seconds of compute."""

    name: str
    bytes: float
    quality: Mapping[str, float | None]
    restore_seconds: float = 0.0
    finetune_seconds: float = 0.0
    objects: tuple[BilledObject, ...] = ()
    device: str = "cpu"


@dataclass(frozen=True)
class PlanVideo:
    """A video's original and its SR options."""

    id: str
    original: PlanOption
    sr: tuple[PlanOption, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------------------------------ access
def read_access_csv(path: Path, ids: Sequence[str]) -> dict[str, float]:
    """``id,views_per_month`` rows for every id; unknown / missing ids or bad numbers: one line naming it."""
    try:
        with Path(path).open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PlanError(f"{path}: cannot read the access file ({exc})") from None
    if not rows or not {"id", "views_per_month"} <= set(rows[0]):
        raise PlanError(f"{path}: needs a header with the columns id,views_per_month")
    out: dict[str, float] = {}
    for i, row in enumerate(rows, start=2):
        try:
            views = float(row["views_per_month"])
        except (TypeError, ValueError):
            views = -1.0
        if not (views >= 0 and math.isfinite(views)):
            raise PlanError(
                f"{path}: line {i}: views_per_month must be a number >= 0, got {row['views_per_month']!r}"
            )
        out[row["id"]] = views
    unknown, missing = sorted(set(out) - set(ids)), sorted(set(ids) - set(out))
    if unknown:
        raise PlanError(f"{path}: unknown video id(s) {unknown[:5]} (ids as in tools/catalog.py)")
    if missing:
        raise PlanError(f"{path}: no views_per_month for {len(missing)} video(s), e.g. {missing[0]!r}")
    return out


def parse_zipf(spec: str) -> dict[str, float]:
    """``s``, ``mean`` and ``seed`` of ``zipf:s=S,mean=M[,seed=K]`` (one line naming the spec if bad)."""
    name, _, args = spec.partition(":")
    try:
        params = {k.strip(): float(v) for k, v in (a.split("=") for a in args.split(",") if a.strip())}
    except ValueError:
        params = {}
    if name != "zipf" or not {"s", "mean"} <= set(params) or set(params) - {"s", "mean", "seed"}:
        raise PlanError(f"--access-model: expected zipf:s=S,mean=M[,seed=K], got {spec!r}")
    if params["s"] < 0 or params["mean"] < 0:
        raise PlanError(f"--access-model: s and mean must be >= 0, got {spec!r}")
    return {"seed": 0.0, **params}


def zipf_access(spec: str, ids: Sequence[str]) -> dict[str, float]:
    """Views per month from ``zipf:s=S,mean=M[,seed=K]`` (module docstring)."""
    params = parse_zipf(spec)
    n = len(ids)
    weights = np.arange(1, n + 1, dtype=np.float64) ** -params["s"]
    views = params["mean"] * n * weights / weights.sum() if n else weights
    order = np.random.default_rng(int(params["seed"])).permutation(n)
    ranked = [sorted(ids)[i] for i in order]
    return {vid: float(v) for vid, v in zip(ranked, views)}


# ------------------------------------------------------------------------------------------ decision
def _floor(video: PlanVideo, policy: Policy) -> float | None:
    """The quality an SR option must reach (None: no floor can be set, no SR option is eligible)."""
    if policy.min_quality is not None:
        return float(policy.min_quality)
    q = video.original.quality.get(policy.metric)
    return None if q is None or not math.isfinite(q) else float(q) - float(policy.tolerance)


def eligible(video: PlanVideo, policy: Policy) -> list[PlanOption]:
    """SR options whose quality reaches the floor."""
    floor = _floor(video, policy)
    if floor is None:
        return []
    return [
        o for o in video.sr if o.quality.get(policy.metric) is not None and o.quality[policy.metric] >= floor
    ]


def _compute_model(cost: CostModel, option: PlanOption) -> CostModel:
    """The cost model with compute at the price of the option's device (CPU price for CPU restores)."""
    if not option.device.startswith("cuda") and cost.cpu_usd_per_hour is not None:
        return dataclasses.replace(cost, gpu_usd_per_hour=cost.cpu_usd_per_hour)
    return cost


def _scenario(
    video: PlanVideo, option: PlanOption, views: float, cost: CostModel, policy: Policy
) -> ArchiveScenario:
    """The cost model's scenario of ``option`` against the original at ``views`` per month."""
    interval = math.inf if views <= 0 else cost.days_per_month / views
    o = video.original
    return ArchiveScenario(
        o.bytes,
        option.bytes,
        option.restore_seconds,
        interval,
        policy.horizon_days,
        option.finetune_seconds,
        1,
        o.objects,
        option.objects,
        policy.packing,
        policy.rewrite_days,
    )


def break_even_views(video: PlanVideo, cost: CostModel, policy: Policy) -> float:
    """The highest views per month at which an eligible SR option is cheaper than the original."""
    best = 0.0
    for opt in eligible(video, policy):
        be = _compute_model(cost, opt).compare(_scenario(video, opt, 0.0, cost, policy)).break_even()
        if be.regime == "always":
            return math.inf
        if be.regime != "never" and be.interval_days:
            best = max(best, cost.days_per_month / be.interval_days)
    return best


def _cheapest(
    video: PlanVideo, options: Sequence[PlanOption], views: float, cost: CostModel, policy: Policy
) -> tuple[OptionCost, dict[str, Any]]:
    """The original's cheapest tier and the cheapest of it and ``options`` at ``views`` per month."""
    dummy = PlanOption("none", 0.0, {})
    base = cost.compare(_scenario(video, dummy, views, cost, policy)).original
    choice = {"choice": "original", "tier": base.tier, "tco_usd": base.total_usd, "option": None}
    for opt in options:
        cmp = _compute_model(cost, opt).compare(_scenario(video, opt, views, cost, policy))
        if cmp.sr.total_usd < choice["tco_usd"]:
            choice = {"choice": "sr", "tier": cmp.sr.tier, "tco_usd": cmp.sr.total_usd, "option": opt.name}
    return base, choice


def plan_video(video: PlanVideo, views: float, cost: CostModel, policy: Policy) -> dict[str, Any]:
    """The cheapest eligible option of one video at ``views`` per month, with both TCOs."""
    options = eligible(video, policy)
    base, choice = _cheapest(video, options, views, cost, policy)
    return {
        "id": video.id,
        "views_per_month": views,
        "break_even_views_per_month": break_even_views(video, cost, policy),
        **choice,
        "tco_original_usd": base.total_usd,
        "original_tier": base.tier,
        "original_bytes": video.original.bytes,
        "eligible_options": [o.name for o in options],
    }


def make_plan(
    videos: Sequence[PlanVideo], access: Mapping[str, float], cost: CostModel, policy: Policy, prices: str
) -> dict[str, Any]:
    """Every video's choice and the catalog's summary (shares, saving, median break-even)."""
    rows = [plan_video(v, access[v.id], cost, policy) for v in videos]
    total_bytes = sum(r["original_bytes"] for r in rows) or 1.0
    sr = [r for r in rows if r["choice"] == "sr"]
    summary = {
        "videos": len(rows),
        "share_of_videos_sr_pays": len(sr) / len(rows) if rows else 0.0,
        "share_of_bytes_sr_pays": sum(r["original_bytes"] for r in sr) / total_bytes,
        "saving_usd": sum(r["tco_original_usd"] - r["tco_usd"] for r in rows),
        "tco_all_original_usd": sum(r["tco_original_usd"] for r in rows),
        "tco_plan_usd": sum(r["tco_usd"] for r in rows),
        "break_even_views_per_month": statistics.median(r["break_even_views_per_month"] for r in rows)
        if rows
        else None,
        "prices": prices,
        "policy": dataclasses.asdict(policy),
    }
    return {"summary": summary, "videos": rows}


def catalog_tco_curve(
    videos: Sequence[PlanVideo], cost: CostModel, policy: Policy, views: Sequence[float]
) -> dict[str, list[float]]:
    """Catalog TCO if every video had the same views per month: all originals vs the plan's choices."""
    options = {video.id: eligible(video, policy) for video in videos}
    orig, planned = [], []
    for v in views:
        pairs = [_cheapest(video, options[video.id], v, cost, policy) for video in videos]
        orig.append(sum(base.total_usd for base, _ in pairs))
        planned.append(sum(choice["tco_usd"] for _, choice in pairs))
    return {"views_per_month": list(views), "original_usd": orig, "plan_usd": planned}


def scale_length(video: PlanVideo, k: float) -> PlanVideo:
    """``video`` as if it lasted ``k`` times as long with the same content (a clip standing for a video).

    What grows with the length is multiplied by ``k``: the original's bytes (and objects), each SR
    option's stream objects (``BilledObject.grows``) and its restore seconds (frames x pixels /
    throughput); the model, the manifest and the fine-tuning are paid once. An SR option's bytes are
    again ``sum_j s_j b_j`` over its objects. Quality is the clip's.
    """
    if not (k > 0 and math.isfinite(k)):
        raise PlanError(f"length scale must be a number > 0, got {k!r}")
    o = video.original
    original = dataclasses.replace(
        o, bytes=o.bytes * k, objects=tuple(dataclasses.replace(b, nbytes=b.nbytes * k) for b in o.objects)
    )
    sr = []
    for opt in video.sr:
        objs = tuple(dataclasses.replace(b, nbytes=b.nbytes * k) if b.grows else b for b in opt.objects)
        nbytes = sum(b.nbytes * b.share for b in objs) if objs else opt.bytes * k
        restore = opt.restore_seconds * k
        sr.append(dataclasses.replace(opt, bytes=nbytes, objects=objs, restore_seconds=restore))
    return PlanVideo(video.id, original, tuple(sr))


def sr_option_from_point(point: Mapping[str, Any], shared_by: int = 1) -> PlanOption:
    """A study point (``sr_finetuned`` / ``sr_base`` of ``results.json``) as an SR option."""
    d = point["bytes_detail"]
    objects = sr_archive_objects(d["lr"], d["model"], d["manifest"], shared_by)
    nbytes = sum(o.nbytes * o.share for o in objects)
    quality = {m: point.get(m) for m in METRICS}
    return PlanOption(
        point["point"],
        nbytes,
        quality,
        float(point["seconds"]["restore"]),
        float(point["seconds"]["finetune"]) / shared_by,
        objects,
        str(point.get("device", "cpu")),
    )
