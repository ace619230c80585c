"""The analysis of a study's measurements: charged bytes, BD-rates and TCO curves (used by :mod:`.report`).

:func:`charged_bytes` is what one video pays for a ladder point, :func:`bd_rate` the Bjøntegaard
delta rate of an option against the full-resolution encode and :func:`tco_curves` the total cost of
ownership against the access interval with the break-even interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.interpolate import PchipInterpolator

from basicvsr_archival.utils.atomic import atomic_write_json

from .cost import ArchiveScenario, sr_archive_bytes
from .package import to_jsonable
from .study_config import BD_METHODS, StudyError

if TYPE_CHECKING:
    from .study_config import Study, TcoSettings


# ------------------------------------------------------------------------------------------ small helpers
def write_json_atomic(obj: Any, path: Path) -> None:
    """Write ``obj`` (made JSON-friendly) to ``path`` atomically (``utils.atomic``)."""
    atomic_write_json(path, to_jsonable(obj))


def charged_bytes(point: Mapping[str, Any], model_shared_by: int = 1) -> float:
    """Bytes charged to one video: ``lr + model / model_shared_by + manifest`` (full: the encode)."""
    d = point["bytes_detail"]
    return sr_archive_bytes(d["lr"], d["model"], d["manifest"], model_shared_by)


# ------------------------------------------------------------------------------------------ BD-rate
@dataclass(frozen=True)
class BDRate:
    """Bjøntegaard delta rate of a test curve against an anchor: % rate change at equal quality."""

    percent: float  # NaN when it cannot be computed (see ``flag``)
    method: str  # 'pchip', 'cubic' (polynomial of degree min(3, n - 1)) or 'linear' (two points)
    flag: str  # 'ok', 'linear_fit', 'no_overlap', 'too_few_points'
    overlap: tuple[float, float] | None
    anchor_points: int
    test_points: int
    overlap_fraction: float | None = None  # overlap width / the anchor's quality range

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN -> None)."""
        return to_jsonable(asdict(self))


def _curve(rates: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(quality, log rate) of the finite points with rate > 0, by quality; equal qualities averaged."""
    r, q = np.asarray(rates, dtype=float), np.asarray(quality, dtype=float)
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    q, lr = q[keep], np.log(r[keep])
    uq = np.unique(q)
    return uq, np.array([lr[q == v].mean() for v in uq])


def _integral(q: np.ndarray, lr: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Exact integral over [lo, hi] of the log-rate curve fitted through (q, lr)."""
    if len(q) == 2:
        return float((np.interp(lo, q, lr) + np.interp(hi, q, lr)) / 2 * (hi - lo))
    if method == "cubic":
        poly = np.polynomial.Polynomial.fit(q, lr, min(3, len(q) - 1)).integ()
        return float(poly(hi) - poly(lo))
    return float(PchipInterpolator(q, lr).integrate(lo, hi))


def bd_rate(
    anchor_rates: Sequence[float], anchor_quality: Sequence[float],
    test_rates: Sequence[float], test_quality: Sequence[float], method: str = "pchip",
) -> BDRate:  # fmt: skip
    """BD-rate (VCEG-M33) of the test curve against the anchor, in %; negative = the test saves bits.

    1. each curve: log(rate) as a function of quality (points sorted by quality, ties averaged);
    2. fit: ``"cubic"``: the VCEG-M33 least-squares polynomial of degree 3 (degree n-1 for n < 4
       points); ``"pchip"``: piecewise cubic Hermite interpolation through the points, as in the
       later reference implementations (more robust with non-polynomial curves); a curve of only two
       points is a straight line whatever the method (``flag = 'linear_fit'``);
    3. overlap: ``lo = max(min q_a, min q_t)``, ``hi = min(max q_a, max q_t)``; none -> NaN
       (``flag = 'no_overlap'``); fewer than 2 usable points on a side -> NaN (``'too_few_points'``);
    4. ``avg = (integral_lo^hi log r_t - integral_lo^hi log r_a) / (hi - lo)`` (exact integrals);
    5. ``BD-rate = (exp(avg) - 1) * 100``; ``overlap_fraction = (hi - lo) / (max q_a - min q_a)`` tells
       how much of the anchor's range the number covers (a small one makes it unreliable).
    """
    if method not in BD_METHODS:
        raise StudyError(f"BD-rate method must be one of {BD_METHODS}, got {method!r}")
    qa, la = _curve(anchor_rates, anchor_quality)
    qt, lt = _curve(test_rates, test_quality)
    n_a, n_t = len(qa), len(qt)
    if min(n_a, n_t) < 2:
        return BDRate(math.nan, method, "too_few_points", None, n_a, n_t)
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not hi > lo:
        return BDRate(math.nan, method, "no_overlap", None, n_a, n_t)
    avg = (_integral(qt, lt, lo, hi, method) - _integral(qa, la, lo, hi, method)) / (hi - lo)
    linear = min(n_a, n_t) == 2
    used = "linear" if max(n_a, n_t) == 2 else method
    frac = (hi - lo) / (qa[-1] - qa[0])
    return BDRate(math.expm1(avg) * 100.0, used, "linear_fit" if linear else "ok", (lo, hi), n_a, n_t, frac)


# ------------------------------------------------------------------------------------------ TCO
def tco_curves(
    original: Mapping[str, Any], options: Sequence[tuple[Mapping[str, Any], bool]], study: Study
) -> dict[str, Any]:
    """TCO of the original and of each SR option vs the access interval, and the break-even interval.

    ``original`` is a ``full`` point and ``options`` the SR points compared with it (with whether their
    quality matches it), each with ``bytes`` = the bytes charged to the video (:func:`charged_bytes`).

    1. ``ArchiveScenario(original bytes, SR bytes, restore seconds, I, horizon, fine-tune seconds,
       cluster_size)`` priced by :meth:`CostModel.compare` at each access interval I (log-spaced from
       ``tco.interval_days``) and at I = inf (never retrieved), each option in its cheapest tier;
    2. compute (restore per retrieval, fine-tuning / cluster size once) at ``cost.gpu_usd_per_hour``
       for points restored on a GPU, at ``tco.cpu_usd_per_hour`` (default the same) on a CPU;
    3. break-even: :meth:`CostComparison.break_even` (closed form, independent of I);
    4. ``model_shared_by_needed`` (fine-tuned SR): videos that must share the model for the archive
       to be smaller than the original, ``model / (original - lr - manifest)`` (inf if LR + manifest
       alone are larger).
    """
    t = study.tco
    intervals = [float(x) for x in np.geomspace(*t.interval_days)]
    out: dict[str, Any] = {"intervals_days": intervals, "horizon_days": t.horizon_days, "options": [],
                           "cluster_size": t.cluster_size, "model_shared_by": t.shared_by}  # fmt: skip
    orig_usd = [
        study.cost.cheapest("original", tco_scenario(original, original, i, t))
        for i in [*intervals, math.inf]
    ]
    out["original"] = {"point": original["point"], "crf": original["crf"], "bytes": original["bytes"],
                       "usd": [c.total_usd for c in orig_usd[:-1]], "tier": [c.tier for c in orig_usd[:-1]],
                       "never_usd": orig_usd[-1].total_usd}  # fmt: skip
    for p, matched in options:
        price = study.cost.gpu_usd_per_hour
        if not str(p.get("device", "cpu")).startswith("cuda") and t.cpu_usd_per_hour is not None:
            price = float(t.cpu_usd_per_hour)
        model = replace(study.cost, gpu_usd_per_hour=price)
        cmps = [model.compare(tco_scenario(original, p, i, t)) for i in [*intervals, math.inf]]
        be = cmps[0].break_even()
        d = p["bytes_detail"]
        gap = original["bytes"] - d["lr"] - d["manifest"]
        needed = (d["model"] / gap if gap > 0 else math.inf) if p["variant"] == "sr_finetuned" else None
        out["options"].append({
            "variant": p["variant"], "point": p["point"], "crf": p["crf"], "scale": p["scale"],
            "bytes": p["bytes"], "quality_matched": matched, "restore_seconds": p["seconds"]["restore"],
            "finetune_seconds": p["seconds"]["finetune"], "compute_usd_per_hour": price,
            "usd": [c.sr.total_usd for c in cmps[:-1]], "tier": [c.sr.tier for c in cmps[:-1]],
            "never_usd": cmps[-1].sr.total_usd, "saving_pct_never": cmps[-1].saving_pct,
            "storage_saving_pct": 100.0 * (1 - p["bytes"] / original["bytes"]),
            "break_even": {"regime": be.regime, "interval_days": be.interval_days, "pays_for": be.pays_for},
            "model_shared_by_needed": needed, "model_bytes": d["model"],
        })  # fmt: skip
    return out


def tco_scenario(
    original: Mapping[str, Any], p: Mapping[str, Any], interval: float, t: TcoSettings
) -> ArchiveScenario:
    """The cost model's scenario of option ``p`` against ``original`` at one access interval."""
    return ArchiveScenario(original["bytes"], p["bytes"], float(p["seconds"]["restore"]), interval,
                           t.horizon_days, float(p["seconds"]["finetune"]), int(t.cluster_size))  # fmt: skip
