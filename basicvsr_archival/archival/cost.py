"""Storage-tier cost model: when does archiving a downscaled video + an SR model pay off?

Background: HotStorage '23 "Neural Cloud Storage" stores a downscaled encode plus a content-aware SR
model instead of the original. Storage shrinks, but every retrieval pays GPU time to restore the video,
so it only pays for rarely accessed videos; with AWS S3 tiers the paper reports TCO savings of up to
22.5 %. This module prices both options over a horizon, each in its cheapest storage tier, with the
paper's two prices per tier (USD per GB-month, per GB retrieved) and, where a price table gives them,
the billing rules of the AWS S3 pricing page (https://aws.amazon.com/s3/pricing/): minimum storage
durations, minimum billable object sizes, per-object overheads, request fees and restore copies
(:class:`.billing.StorageTier`; price tables in ``configs/archival/prices``, :mod:`.prices`).

Units: prices in USD; sizes in bytes converted with ``gb_bytes`` bytes per GB. The default is the SI
gigabyte (1e9 bytes); pass ``gb="binary"`` (2**30 bytes) for a provider whose billed "GB" is a GiB
(check the provider's billing definitions; AWS's count 2**30 bytes). A month is ``days_per_month`` (30) days.

TCO of one option (original or SR archive) in tier t over a horizon of H days, accessed every I days.
The option is a set of billed objects j of b_j bytes, a share s_j of each charged to this video
(:class:`.billing.BilledObject`; by default one object of all its bytes, share 1); ``packing`` says
whether a video's own members are packed into one object in tier t (:func:`.billing.objects_in_tier`):

1. ``S = bytes / gb_bytes``                               (GB stored, = sum_j s_j b_j / gb_bytes)
2. ``M = H / days_per_month``                              (months stored)
3. ``R = H / I``                                           (expected retrievals; 0 when I = inf; not rounded)
4. ``storage_t = B_t * p_t * M * f_t + V_t * p_std * M``   (p_t: USD per GB-month of tier t), where
   ``B_t = sum_j s_j (max(b_j, z_t) + v_t) / gb_bytes``   (z_t: minimum billable object size,
   v_t: per-object overhead at p_t), ``V_t = sum_j s_j w_t / gb_bytes`` (w_t: per-object overhead at
   the standard tier's price p_std; AWS Glacier Flexible Retrieval / Deep Archive: v = 32 KB, w = 8 KB),
   and ``f_t = max(L, m_t) / L`` the minimum-duration factor: the objects are rewritten every
   ``rewrite_days`` W days (inf = never) and deleted at the horizon, so each write lives
   ``L = min(W, H)`` days and is billed ``max(L, m_t)`` days (m_t: minimum storage days);
5. ``retrieval_t = S * r_t * R``                           (r_t: USD per GB retrieved)
6. ``requests_t = (H / L) * K_t * put_t + R * K_t * (get_t + restore_t)``   (K_t = sum_j s_j objects
   billed; put/get/restore: USD per request = per-1,000 price / 1000; H / L writes, fractional like R)
7. ``copy_t = R * S * p_std * D / days_per_month``         (tiers that need a restore: each retrieval
   restores a temporary copy billed at the standard tier's price for D = ``restore_copy_days`` days)
8. ``compute = R * restore_s * g / 3600``                  (SR only; g: compute USD/hour, GPU or CPU)
9. ``finetune = finetune_s * g / 3600 / N``                (SR only; one-time, shared by N videos)
10. ``TCO_t = storage_t + retrieval_t + requests_t + copy_t + compute + finetune``; each option uses
    ``min_t TCO_t``; ``saving = TCO_original - TCO_sr``; ``saving % = 100 * saving / TCO_original``.

With a two-price tier (every other field 0) steps 4, 6 and 7 reduce to ``S * p_t * M`` and 0: the
paper's model. Steps 4-10 are ``a_t + b_t * R`` per tier: minimum durations, sizes, overheads and PUTs
are constants, GET / restore requests, restore copies and compute grow linearly with R.

Break-even (see :meth:`CostComparison.break_even`): with H fixed, both cheapest-tier costs are minima
of straight lines in R, i.e. concave piecewise-linear, so the saving D(R) is piecewise linear and its
zeros are found in closed form on each linear piece (no bisection).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .billing import (
    DEFAULT_TIERS,
    PACKINGS,
    BilledObject,
    CostModelError,
    StorageTier,
    _check_nonneg,
    objects_in_tier,
    parse_tiers,
    sr_archive_objects,
    tier_config,
)

__all__ = [
    "DEFAULT_TIERS", "GB_BINARY", "GB_SI", "ArchiveScenario", "BilledObject", "BreakEven", "CostComparison",
    "CostModel", "CostModelError", "OptionCost", "StorageTier", "sr_archive_bytes", "sr_archive_objects",
]  # fmt: skip

GB_SI = 1e9
GB_BINARY = float(2**30)
_GB_NAMES = {"si": GB_SI, "gb": GB_SI, "decimal": GB_SI, "binary": GB_BINARY, "gib": GB_BINARY}


def sr_archive_bytes(
    lr_bytes: float, model_bytes: float, manifest_bytes: float = 0, model_shared_by: int = 1
) -> float:
    """Bytes charged to one video's SR archive: ``lr + model / model_shared_by + manifest``."""
    if model_shared_by < 1:
        raise CostModelError(f"model_shared_by must be >= 1, got {model_shared_by}")
    return float(lr_bytes) + float(model_bytes) / model_shared_by + float(manifest_bytes)


@dataclass(frozen=True)
class ArchiveScenario:
    """Inputs of one comparison (sizes in bytes, times in seconds, intervals in days).

    ``original_objects`` / ``sr_objects``: the option's billed objects (empty: one object of all its
    bytes; else their share-weighted bytes must add up to ``original_bytes`` / ``sr_bytes``);
    ``packing``: ``per_member``, ``packed`` or ``packed_cold`` (:func:`.billing.objects_in_tier`);
    ``rewrite_days``: days between rewrites of the objects (inf: written once); ``restore_copy_days``:
    days a restored copy is kept in tiers that need a restore (1 = the shortest AWS restore).
    """

    original_bytes: float
    sr_bytes: float
    restore_seconds: float
    access_interval_days: float
    horizon_days: float = 365.0
    finetune_seconds: float = 0.0
    cluster_size: int = 1
    original_objects: tuple[BilledObject, ...] = ()
    sr_objects: tuple[BilledObject, ...] = ()
    packing: str = "per_member"
    rewrite_days: float = math.inf
    restore_copy_days: float = 1.0

    def __post_init__(self) -> None:
        """Validate: sizes/times >= 0, horizon > 0, interval > 0 (inf = never retrieved), cluster >= 1."""
        if _check_nonneg("original_bytes", self.original_bytes) == 0:
            raise CostModelError("original_bytes must be > 0")
        _check_nonneg("sr_bytes", self.sr_bytes)
        _check_nonneg("restore_seconds", self.restore_seconds)
        _check_nonneg("finetune_seconds", self.finetune_seconds)
        if _check_nonneg("horizon_days", self.horizon_days) == 0:
            raise CostModelError("horizon_days must be > 0")
        if _check_nonneg("access_interval_days", self.access_interval_days, allow_inf=True) == 0:
            raise CostModelError("access_interval_days must be > 0 (use math.inf for never)")
        if (
            isinstance(self.cluster_size, bool)
            or not isinstance(self.cluster_size, int)
            or self.cluster_size < 1
        ):
            raise CostModelError(f"cluster_size must be an int >= 1, got {self.cluster_size!r}")
        if self.packing not in PACKINGS:
            raise CostModelError(f"packing must be one of {list(PACKINGS)}, got {self.packing!r}")
        if _check_nonneg("rewrite_days", self.rewrite_days, allow_inf=True) == 0:
            raise CostModelError("rewrite_days must be > 0 (use math.inf for never)")
        _check_nonneg("restore_copy_days", self.restore_copy_days)
        for name in ("original", "sr"):
            objs, nbytes = tuple(getattr(self, f"{name}_objects")), getattr(self, f"{name}_bytes")
            object.__setattr__(self, f"{name}_objects", objs)
            total = sum(o.nbytes * o.share for o in objs)
            if objs and not math.isclose(total, nbytes, rel_tol=1e-9, abs_tol=1e-6):
                raise CostModelError(
                    f"{name}_objects add up to {total:.0f} bytes, not {name}_bytes = {nbytes}"
                )

    @property
    def retrievals(self) -> float:
        """Expected retrievals over the horizon: ``R = horizon / interval`` (step 3, fractional)."""
        return 0.0 if math.isinf(self.access_interval_days) else self.horizon_days / self.access_interval_days

    @property
    def days_per_write(self) -> float:
        """Days each write of the objects lives: ``L = min(rewrite_days, horizon)`` (step 4)."""
        return min(self.rewrite_days, self.horizon_days)

    def objects(self, option: str) -> tuple[BilledObject, ...]:
        """The billed objects of ``option`` ('original' or 'sr'), before packing."""
        objs = self.original_objects if option == "original" else self.sr_objects
        return objs or (BilledObject(self.original_bytes if option == "original" else self.sr_bytes),)


@dataclass(frozen=True)
class OptionCost:
    """Cost breakdown of one option ('original' or 'sr') in one tier, USD over the horizon."""

    option: str
    tier: str
    storage_usd: float
    retrieval_usd: float
    compute_usd: float = 0.0
    finetune_usd: float = 0.0
    request_usd: float = 0.0
    restore_copy_usd: float = 0.0

    @property
    def total_usd(self) -> float:
        """TCO = storage + retrieval + compute + fine-tune share + requests + restore copies (step 10)."""
        return (self.storage_usd + self.retrieval_usd + self.compute_usd + self.finetune_usd
                + self.request_usd + self.restore_copy_usd)  # fmt: skip


@dataclass(frozen=True)
class CostModel:
    """Prices: storage tiers, compute USD per hour, bytes per GB and days per month.

    ``standard_tier`` names the tier whose storage price bills restore copies and per-object overheads
    "at Standard" (needed when a tier has them); ``cpu_usd_per_hour`` is a price table's CPU price
    (informational here: :meth:`compute_usd` uses ``gpu_usd_per_hour``; callers pricing CPU restores
    replace it, e.g. ``dataclasses.replace(model, gpu_usd_per_hour=model.cpu_usd_per_hour)``).
    """

    tiers: tuple[StorageTier, ...] = DEFAULT_TIERS
    gpu_usd_per_hour: float = 0.302
    gb_bytes: float = GB_SI
    days_per_month: float = 30.0
    standard_tier: str | None = None
    cpu_usd_per_hour: float | None = None

    def __post_init__(self) -> None:
        """Validate prices and units."""
        object.__setattr__(self, "tiers", tuple(self.tiers))
        if not self.tiers:
            raise CostModelError("at least one storage tier is needed")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise CostModelError(f"tier names must be unique, got {names}")
        _check_nonneg("gpu_usd_per_hour", self.gpu_usd_per_hour)
        if self.cpu_usd_per_hour is not None:
            _check_nonneg("cpu_usd_per_hour", self.cpu_usd_per_hour)
        if (
            _check_nonneg("gb_bytes", self.gb_bytes) == 0
            or _check_nonneg("days_per_month", self.days_per_month) == 0
        ):
            raise CostModelError("gb_bytes and days_per_month must be > 0")
        if self.standard_tier is not None and self.standard_tier not in names:
            raise CostModelError(f"standard_tier {self.standard_tier!r} is not one of the tiers {names}")
        needs = [t.name for t in self.tiers if t.has_standard_charges]
        if needs and self.standard_tier is None:
            raise CostModelError(
                f"tiers {needs} bill restore copies or overheads at Standard: set standard_tier"
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> CostModel:
        """Build from a config dict; missing keys take the defaults, unknown keys are an error.

        Keys: ``tiers`` (list of StorageTier field dicts, ``{name: [storage, retrieval]}`` or
        ``{name: {field: value}}``), ``gpu_usd_per_hour``, ``cpu_usd_per_hour``, ``gb`` (bytes per GB,
        or 'SI'/'GB' = 1e9, 'binary'/'GiB' = 2**30), ``days_per_month``, ``standard_tier``.
        """
        cfg = dict(cfg)
        known = {
            "tiers",
            "gpu_usd_per_hour",
            "cpu_usd_per_hour",
            "gb",
            "gb_bytes",
            "days_per_month",
            "standard_tier",
        }
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise CostModelError(f"unknown cost-model key(s) {unknown}")
        kwargs: dict[str, Any] = {}
        if "tiers" in cfg:
            kwargs["tiers"] = parse_tiers(cfg["tiers"])
        for key in ("gpu_usd_per_hour", "days_per_month"):
            if key in cfg:
                kwargs[key] = _check_nonneg(key, cfg[key])
        if cfg.get("cpu_usd_per_hour") is not None:
            kwargs["cpu_usd_per_hour"] = _check_nonneg("cpu_usd_per_hour", cfg["cpu_usd_per_hour"])
        if cfg.get("standard_tier") is not None:
            kwargs["standard_tier"] = str(cfg["standard_tier"])
        gb = cfg.get("gb", cfg.get("gb_bytes"))
        if gb is not None:
            if isinstance(gb, str):
                if gb.lower() not in _GB_NAMES:
                    raise CostModelError(f"gb must be a byte count or one of {sorted(_GB_NAMES)}, got {gb!r}")
                kwargs["gb_bytes"] = _GB_NAMES[gb.lower()]
            else:
                kwargs["gb_bytes"] = _check_nonneg("gb", gb)
        return cls(**kwargs)

    def to_config(self) -> dict[str, Any]:
        """Dict that :meth:`from_config` turns back into an equal model (optional keys only when set)."""
        out = {"tiers": [tier_config(t) for t in self.tiers], "gpu_usd_per_hour": self.gpu_usd_per_hour,
               "gb": self.gb_bytes, "days_per_month": self.days_per_month}  # fmt: skip
        for key in ("standard_tier", "cpu_usd_per_hour"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def tier(self, name: str) -> StorageTier:
        """The tier called ``name``."""
        for t in self.tiers:
            if t.name == name:
                return t
        raise CostModelError(f"no tier {name!r} (tiers: {[t.name for t in self.tiers]})")

    # -- per-option costs ------------------------------------------------------------------------------
    def compute_usd(self, seconds: float) -> float:
        """Price of ``seconds`` of compute: ``seconds * g / 3600``."""
        return seconds * self.gpu_usd_per_hour / 3600.0

    def finetune_share_usd(self, scn: ArchiveScenario) -> float:
        """One-time fine-tuning cost charged to one video (step 9): ``finetune_s * g / 3600 / N``."""
        return self.compute_usd(scn.finetune_seconds) / scn.cluster_size

    def option_costs(
        self, option: str, scn: ArchiveScenario, retrievals: float | None = None
    ) -> list[OptionCost]:
        """Steps 1-10 for ``option`` ('original' or 'sr') in every tier (``retrievals`` overrides R)."""
        if option not in ("original", "sr"):
            raise CostModelError(f"option must be 'original' or 'sr', got {option!r}")
        r = scn.retrievals if retrievals is None else float(retrievals)
        compute = self.compute_usd(scn.restore_seconds) * r if option == "sr" else 0.0
        finetune = self.finetune_share_usd(scn) if option == "sr" else 0.0
        return [self._option_cost(t, option, scn, r, compute, finetune) for t in self.tiers]

    def _option_cost(
        self, t: StorageTier, option: str, scn: ArchiveScenario, r: float, compute: float, finetune: float
    ) -> OptionCost:
        """Steps 1-7 in tier ``t`` at ``r`` retrievals (``compute`` and ``finetune`` from steps 8-9)."""
        months = scn.horizon_days / self.days_per_month
        size_gb = (scn.original_bytes if option == "original" else scn.sr_bytes) / self.gb_bytes
        objs = objects_in_tier(scn.objects(option), scn.packing, t)
        billed_gb = sum(o.share * (max(o.nbytes, t.min_object_bytes) + t.overhead_bytes) for o in objs)
        billed_gb /= self.gb_bytes
        life = scn.days_per_write
        storage = billed_gb * t.storage_usd_per_gb_month * months * (max(life, t.min_storage_days) / life)
        p_std = self.tier(self.standard_tier).storage_usd_per_gb_month if self.standard_tier else 0.0
        n_objects = sum(o.share for o in objs)
        if t.overhead_standard_bytes:
            storage += n_objects * t.overhead_standard_bytes / self.gb_bytes * p_std * months
        writes = scn.horizon_days / life
        requests = (writes * n_objects * t.put_usd_per_1000
                    + r * n_objects * (t.get_usd_per_1000 + t.restore_usd_per_1000)) / 1000.0  # fmt: skip
        copy = r * size_gb * p_std * scn.restore_copy_days / self.days_per_month if t.needs_restore else 0.0
        return OptionCost(option, t.name, storage, size_gb * t.retrieval_usd_per_gb * r, compute, finetune,
                          requests, copy)  # fmt: skip

    def cheapest(self, option: str, scn: ArchiveScenario, retrievals: float | None = None) -> OptionCost:
        """The option's cheapest tier (ties: the first tier in ``self.tiers``)."""
        return min(self.option_costs(option, scn, retrievals), key=lambda c: c.total_usd)

    def compare(self, scn: ArchiveScenario) -> CostComparison:
        """Price the original and the SR archive, each in its cheapest tier (steps 1-10)."""
        orig_all = tuple(self.option_costs("original", scn))
        sr_all = tuple(self.option_costs("sr", scn))
        orig = min(orig_all, key=lambda c: c.total_usd)
        sr = min(sr_all, key=lambda c: c.total_usd)
        saving = orig.total_usd - sr.total_usd
        pct = 100.0 * saving / orig.total_usd if orig.total_usd > 0 else (0.0 if saving == 0 else -math.inf)
        return CostComparison(self, scn, orig, sr, orig_all, sr_all, saving, pct)

    def cost_lines(self, option: str, scn: ArchiveScenario) -> list[tuple[str, float, float]]:
        """Each tier's TCO as a line in R: ``(tier, intercept, slope)``, TCO_t(R) = intercept + slope * R."""
        at0 = self.option_costs(option, scn, retrievals=0.0)
        at1 = self.option_costs(option, scn, retrievals=1.0)
        return [(a.tier, a.total_usd, b.total_usd - a.total_usd) for a, b in zip(at0, at1)]


@dataclass(frozen=True)
class BreakEven:
    """Where the SR archive becomes cheaper, in access intervals (days between retrievals).

    ``regime``:

    * ``"always"``: SR is cheaper at every access interval; ``interval_days`` is None;
    * ``"never"``: SR is never cheaper, not even if never retrieved; ``interval_days`` is ``math.inf``;
    * ``"rarer_than"``: SR is cheaper exactly when the interval is longer than ``interval_days``;
    * ``"window"``: SR is cheaper only on the ranges in ``pays_for``; ``interval_days`` is the longest
      finite range boundary (the first break-even met when access grows more frequent from never).

    ``pays_for`` lists the open ranges ``(lo, hi)`` of intervals (days) where SR is cheaper.
    """

    regime: str
    interval_days: float | None
    pays_for: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class CostComparison:
    """Result of :meth:`CostModel.compare`: both options in their cheapest tiers and the saving."""

    model: CostModel
    scenario: ArchiveScenario
    original: OptionCost
    sr: OptionCost
    original_by_tier: tuple[OptionCost, ...] = field(repr=False)
    sr_by_tier: tuple[OptionCost, ...] = field(repr=False)
    saving_usd: float
    saving_pct: float

    @property
    def sr_pays(self) -> bool:
        """True if the SR archive is strictly cheaper at this scenario's access interval."""
        return self.saving_usd > 0

    def break_even(self) -> BreakEven:
        """Solve ``TCO_original(I) == TCO_sr(I)`` for the access interval I (horizon fixed).

        1. A(R) = min_t (a_t + b_t R) and B(R) = min_u (c_u + d_u R) from :meth:`CostModel.cost_lines`;
        2. breakpoints: every R > 0 where two tiers of the same option cost the same,
           ``R = (a_t - a_t') / (b_t' - b_t)``; between breakpoints D(R) = A(R) - B(R) is linear;
        3. on each piece the root of D is ``R0 - D(R0) * (R1 - R0) / (D(R1) - D(R0))`` (exact, closed form);
           beyond the last breakpoint D's slope is ``b* - d*`` of the tiers that win there;
        4. the sign of D between consecutive roots/breakpoints gives the ranges where SR pays
           (D > 0); ``I = H / R`` maps them to access intervals (R = 0 <-> I = inf).
        """
        scn, model = self.scenario, self.model
        lines_a = model.cost_lines("original", scn)
        lines_b = model.cost_lines("sr", scn)

        def cost(lines: list[tuple[str, float, float]], r: float) -> float:
            return min(i + s * r for _, i, s in lines)

        def saving(r: float) -> float:
            return cost(lines_a, r) - cost(lines_b, r)

        scale = max(1.0, *(abs(i) + abs(s) for _, i, s in lines_a + lines_b))
        tol = 1e-12 * scale
        cuts = sorted({r for lines in (lines_a, lines_b) for r in _crossings(lines) if r > 0})
        points = [0.0, *cuts]
        roots: list[float] = []
        for r0, r1 in itertools.pairwise(points):
            d0, d1 = saving(r0), saving(r1)
            if (d0 > tol and d1 < -tol) or (d0 < -tol and d1 > tol):
                roots.append(r0 - d0 * (r1 - r0) / (d1 - d0))
        # final unbounded piece: D(R) = D(r_last) + slope * (R - r_last)
        r_last = points[-1]
        probe = r_last + 1.0
        slope = saving(probe) - saving(r_last)
        d_last = saving(r_last)
        if abs(slope) > tol and -d_last / slope > 0 and abs(d_last) > tol:
            roots.append(r_last - d_last / slope)
        marks = sorted({*points, *roots})
        # classify each open range between consecutive marks (and beyond the last one) by its midpoint
        edges = [*marks, math.inf]
        ranges_r: list[tuple[float, float]] = []
        for lo, hi in itertools.pairwise(edges):
            mid = lo + 1.0 + abs(lo) if math.isinf(hi) else (lo + hi) / 2
            if saving(mid) > tol:
                if ranges_r and ranges_r[-1][1] == lo:
                    ranges_r[-1] = (ranges_r[-1][0], hi)  # merge across a breakpoint where D stays > 0
                else:
                    ranges_r.append((lo, hi))
        h = scn.horizon_days
        pays_for = tuple(sorted((h / r_hi if r_hi > 0 else math.inf, h / r_lo if r_lo > 0 else math.inf)
                                for r_lo, r_hi in ranges_r))  # fmt: skip
        if not ranges_r:
            return BreakEven("never", math.inf, ())
        if ranges_r == [(0.0, math.inf)]:
            return BreakEven("always", None, pays_for)
        if len(ranges_r) == 1 and ranges_r[0][0] == 0.0:
            return BreakEven("rarer_than", h / ranges_r[0][1], pays_for)
        finite = [b for rng in pays_for for b in rng if 0 < b < math.inf]
        return BreakEven("window", max(finite), pays_for)

    def break_even_interval_days(self) -> float | None:
        """Access interval (days) where both TCOs are equal; ``math.inf`` if SR never pays, None if always.

        SR pays for intervals longer than this value (regime ``"rarer_than"``); see :meth:`break_even`.
        """
        return self.break_even().interval_days


def _crossings(lines: Sequence[tuple[str, float, float]]) -> list[float]:
    """All R where two of the lines intersect (parallel lines skipped)."""
    out = []
    for k, (_, i1, s1) in enumerate(lines):
        for _, i2, s2 in lines[k + 1 :]:
            if s1 != s2:
                out.append((i2 - i1) / (s1 - s2))
    return out
