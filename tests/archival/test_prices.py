"""Price tables and billing rules: hand-computed cases to the cent (minimum durations, minimum sizes and
per-object overheads, packing, request fees, restore copies) and both tables loading."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config

from basicvsr_archival.archival.cost import (
    ArchiveScenario,
    BilledObject,
    CostModel,
    CostModelError,
    StorageTier,
    sr_archive_bytes,
    sr_archive_objects,
)
from basicvsr_archival.archival.prices import PRICES_DIR, available_prices, load_prices

GIB = 2**30
MIB = 2**20
KB = 1024
AWS = load_prices("aws_s3")


def cents(x: float) -> float:
    """Round to the cent."""
    return round(x, 2)


def in_tier(model: CostModel, tier: str, scn: ArchiveScenario, option: str = "original"):
    """The option's cost in one tier."""
    return next(c for c in model.option_costs(option, scn) if c.tier == tier)


def scenario(nbytes: float, horizon: float, interval: float = math.inf, **kw) -> ArchiveScenario:
    """An original of ``nbytes`` (the SR side is irrelevant here: 1 byte, no compute)."""
    return ArchiveScenario(nbytes, 1, 0, interval, horizon, **kw)


# -- (a) minimum storage duration ----------------------------------------------------------------------
def test_minimum_duration_binds_on_short_horizons_by_hand() -> None:
    # 1000 GiB in Deep Archive (0.00099 $/GB-month, 180 days minimum), kept 30 days, never retrieved:
    # billed 180 days = 6 months: (1000 GiB + 32 KB) * 0.00099 * 6       = 5.9400002
    #                             + 8 KB at Standard 0.023 $ * 1 month    = 0.0000002
    #                             + 1 PUT * 0.05 $ / 1000                 = 0.00005     -> 5.94 $
    # without the minimum it would be 1000 * 0.00099 * 1 = 0.99 $
    c = in_tier(AWS, "Glacier Deep Archive", scenario(1000 * GIB, 30))
    assert cents(c.storage_usd) == 5.94 and c.request_usd == pytest.approx(0.00005)
    assert c.storage_usd == pytest.approx((1000 + 32 * KB / GIB) * 0.00099 * 6 + 8 * KB / GIB * 0.023)
    assert cents(c.total_usd) == 5.94
    # Standard-IA (0.0125 $, 30 days) kept 10 days: 1000 * 0.0125 * (10/30) * (30/10) = 12.50 $
    ia = in_tier(AWS, "Standard-IA", scenario(1000 * GIB, 10))
    assert cents(ia.storage_usd) == 12.50 and ia.storage_usd == pytest.approx(12.5)
    # a horizon past the minimum: not binding: 1000 * 0.00099 * 365/30 = 12.045 (+ tiny overheads)
    long = in_tier(AWS, "Glacier Deep Archive", scenario(1000 * GIB, 365))
    assert long.storage_usd == pytest.approx(12.045, abs=1e-5)


def test_minimum_duration_binds_per_rewrite_by_hand() -> None:
    # 1000 GiB in Deep Archive over 365 days, rewritten every W days; each write lives L = W days and is
    # billed max(L, 180) days; 365 / W writes (steady state, fractional like R), one PUT each:
    # W = 60:  f = 180/60 = 3: 1000 * 0.00099 * 365/30 * 3 = 36.135; PUTs 365/60 * 0.00005 = 0.000304
    #          -> 36.1353 -> 36.14 $ (12.05 $ without the minimum)
    # W = 200: f = 1: 12.045 + 365/200 * 0.00005 = 12.0451 -> 12.05 $
    dear = in_tier(AWS, "Glacier Deep Archive", scenario(1000 * GIB, 365, rewrite_days=60))
    assert dear.storage_usd == pytest.approx(36.135, abs=1e-5)
    assert dear.request_usd == pytest.approx(365 / 60 * 0.05 / 1000)
    assert cents(dear.total_usd) == 36.14
    cheap = in_tier(AWS, "Glacier Deep Archive", scenario(1000 * GIB, 365, rewrite_days=200))
    assert cents(cheap.total_usd) == 12.05
    # Standard has no minimum: rewrites only add PUTs (365/60 * 0.005 $ / 1000)
    std = in_tier(AWS, "Standard", scenario(1000 * GIB, 365, rewrite_days=60))
    assert std.storage_usd == pytest.approx(1000 * 0.023 * 365 / 30)
    assert std.request_usd == pytest.approx(365 / 60 * 0.005 / 1000)
    # Glacier Flexible Retrieval (90 days minimum) at W = 60: f = 1.5: 1000 * 0.0036 * 365/30 * 1.5 = 65.70 $
    gfr = in_tier(AWS, "Glacier Flexible Retrieval", scenario(1000 * GIB, 365, rewrite_days=60))
    assert cents(gfr.storage_usd) == 65.70


# -- (b) minimum billable size, per-object overhead, packing -----------------------------------------------
def test_minimum_object_size_by_hand() -> None:
    # 10,000 objects of 10 KB in Standard-IA for 3600 days (120 months), never retrieved:
    # each billed 128 KB: 10,000 * 128 KB = 1.220703125 GiB * 0.0125 * 120 = 1.8310546875 -> 1.83 $
    # (10 KB as stored: 0.095367 GiB -> 0.143 $); PUT once: 10,000 * 0.01 / 1000 = 0.10 $ -> 1.93 $
    objs = (BilledObject(10 * KB),) * 10_000
    scn = scenario(10_000 * 10 * KB, 3600, original_objects=objs)
    c = in_tier(AWS, "Standard-IA", scn)
    assert c.storage_usd == pytest.approx(10_000 * 128 * KB / GIB * 0.0125 * 120)
    assert cents(c.storage_usd) == 1.83 and cents(c.request_usd) == 0.10 and cents(c.total_usd) == 1.93
    # the same bytes as one object: no minimum binds: 0.095367 * 0.0125 * 120 = 0.143 -> 0.14 $
    one = in_tier(AWS, "Standard-IA", scenario(10_000 * 10 * KB, 3600))
    assert cents(one.storage_usd) == 0.14


def test_glacier_per_object_overhead_by_hand() -> None:
    # 10,000 objects of 10 KB in Deep Archive for 360 days (12 months), never retrieved:
    # at Deep Archive's price: 10,000 * (10 + 32) KB = 0.400543 GiB * 0.00099 * 12 = 0.004758
    # at Standard's price:     10,000 * 8 KB        = 0.076294 GiB * 0.023   * 12 = 0.021057
    # storage 0.025816 -> 0.03 $ (the 100 MB alone: 0.001133 $); PUTs 10,000 * 0.05 / 1000 = 0.50 $
    objs = (BilledObject(10 * KB),) * 10_000
    c = in_tier(AWS, "Glacier Deep Archive", scenario(10_000 * 10 * KB, 360, original_objects=objs))
    want = 10_000 * 42 * KB / GIB * 0.00099 * 12 + 10_000 * 8 * KB / GIB * 0.023 * 12
    assert c.storage_usd == pytest.approx(want) and want == pytest.approx(0.025816, abs=1e-6)
    assert cents(c.storage_usd) == 0.03 and cents(c.total_usd) == 0.53
    # kept 30 days: the 180-day minimum applies to the Deep Archive part only (Standard has none):
    # 0.400543 * 0.00099 * 6 + 0.076294 * 0.023 * 1 = 0.002379 + 0.001755 = 0.004134
    short = in_tier(AWS, "Glacier Deep Archive", scenario(10_000 * 10 * KB, 30, original_objects=objs))
    assert short.storage_usd == pytest.approx(10_000 * (42 * 0.00099 * 6 + 8 * 0.023) * KB / GIB)
    assert short.storage_usd == pytest.approx(0.004134, abs=1e-6)


def test_packed_versus_per_member_by_hand() -> None:
    # A video stored as 1,000 members of 1 MiB in Deep Archive, 360 days, retrieved monthly (R = 12),
    # restored copies kept 1 day at Standard's 0.023 $; S = 1000 MiB = 0.9765625 GiB.
    # per member (K = 1000):
    #   storage  (1000 MiB + 1000 * 32 KB) / GiB * 0.00099 * 12 = 1.0070801 * 0.01188 = 0.0119641
    #          + 1000 * 8 KB / GiB * 0.023 * 12                  = 0.0021057
    #   PUT      1000 * 0.05 / 1000                               = 0.05
    #   retrieval 0.9765625 * 0.02 * 12                           = 0.234375
    #   requests 12 * 1000 * (0.0004 + 0.10) / 1000               = 1.2048
    #   copies   12 * 0.9765625 * 0.023 * 1 / 30                  = 0.0089844
    #   total 1.5122292 -> 1.51 $
    # packed (K = 1): storage 0.9765930 * 0.01188 + 8 KB -> 0.0116041; PUT 0.00005; requests 0.0012048
    #   total 0.0116041 + 0.00005 + 0.234375 + 0.0012048 + 0.0089844 = 0.2562183 -> 0.26 $
    objs = (BilledObject(MIB),) * 1000
    scn = scenario(1000 * MIB, 360, 30, original_objects=objs)
    per = in_tier(AWS, "Glacier Deep Archive", scn)
    assert cents(per.request_usd) == 1.25 and cents(per.retrieval_usd) == 0.23
    assert per.restore_copy_usd == pytest.approx(12 * 0.9765625 * 0.023 / 30)
    assert per.total_usd == pytest.approx(1.5122292, abs=1e-6) and cents(per.total_usd) == 1.51
    packed = in_tier(AWS, "Glacier Deep Archive", dataclasses.replace(scn, packing="packed_cold"))
    assert packed.total_usd == pytest.approx(0.2562183, abs=1e-6) and cents(packed.total_usd) == 0.26
    # packed_cold packs only where a restore is needed: Standard still bills 1000 PUTs and GETs
    std = [in_tier(AWS, "Standard", dataclasses.replace(scn, packing=p)) for p in ("packed_cold", "packed")]
    assert std[0].request_usd == pytest.approx((1000 * 0.005 + 12 * 1000 * 0.0004) / 1000)
    assert std[1].request_usd == pytest.approx((0.005 + 12 * 0.0004) / 1000)


def test_shared_model_object_share_by_hand() -> None:
    # SR archive: LR 500 MiB, a 20 MiB model shared by 10 videos, a 4 KB manifest (three members)
    objs = sr_archive_objects(500 * MIB, 20 * MIB, 4 * KB, model_shared_by=10)
    nbytes = sr_archive_bytes(500 * MIB, 20 * MIB, 4 * KB, model_shared_by=10)
    assert [(o.nbytes, o.share) for o in objs] == [(500 * MIB, 1.0), (20 * MIB, 0.1), (4 * KB, 1.0)]
    scn = ArchiveScenario(10 * GIB, nbytes, 0, math.inf, 360, sr_objects=objs)
    # Standard-IA, 12 months: the manifest is billed 128 KB: (500 MiB + 2 MiB + 128 KB) * 0.0125 * 12
    # PUTs: K = 1 + 0.1 + 1 = 2.1 objects * 0.01 / 1000
    c = in_tier(AWS, "Standard-IA", scn, "sr")
    assert c.storage_usd == pytest.approx((500 * MIB + 2 * MIB + 128 * KB) / GIB * 0.0125 * 12)
    assert c.request_usd == pytest.approx(2.1 * 0.01 / 1000)
    # packed: LR + manifest in one object (no minimum binds), the shared model stays its own object
    p = in_tier(AWS, "Standard-IA", dataclasses.replace(scn, packing="packed"), "sr")
    assert p.storage_usd == pytest.approx(nbytes / GIB * 0.0125 * 12)
    assert p.request_usd == pytest.approx(1.1 * 0.01 / 1000)


# -- (c) request fees and restore copies ----------------------------------------------------------------
def test_request_fees_by_hand() -> None:
    # 10,000 objects of 1 MiB (9.765625 GiB) in Standard-IA, 360 days, retrieved every 30 days (R = 12):
    # PUT once: 10,000 * 0.01 / 1000 = 0.10 $; GETs: 12 * 10,000 * 0.001 / 1000 = 0.12 $ -> 0.22 $
    # storage 9.765625 * 0.0125 * 12 = 1.46484375, retrieval 9.765625 * 0.01 * 12 = 1.171875
    # total 2.85671875 -> 2.86 $
    objs = (BilledObject(MIB),) * 10_000
    scn = scenario(10_000 * MIB, 360, 30, original_objects=objs)
    c = in_tier(AWS, "Standard-IA", scn)
    assert c.request_usd == pytest.approx(0.22) and c.restore_copy_usd == 0
    assert cents(c.storage_usd) == 1.46 and cents(c.retrieval_usd) == 1.17 and cents(c.total_usd) == 2.86
    # rewritten every 90 days: 4 writes -> PUTs 0.40 $, requests 0.52 $
    assert in_tier(
        AWS, "Standard-IA", dataclasses.replace(scn, rewrite_days=90)
    ).request_usd == pytest.approx(0.52)
    # Deep Archive: PUT 10,000 * 0.05 / 1000 = 0.50, per retrieval 10,000 * (0.10 + 0.0004) / 1000 = 1.004
    # -> 0.50 + 12 * 1.004 = 12.548 $; restored copies kept 7 days: 12 * 9.765625 * 0.023 * 7/30 = 0.63 $
    da = in_tier(AWS, "Glacier Deep Archive", dataclasses.replace(scn, restore_copy_days=7))
    assert da.request_usd == pytest.approx(12.548) and cents(da.restore_copy_usd) == 0.63


def test_tco_stays_linear_in_retrievals() -> None:
    # slope of each tier's line = per-retrieval fees: S r + K (get + restore) / 1000 + copy + compute
    objs = (BilledObject(MIB),) * 100
    scn = ArchiveScenario(100 * MIB, 10 * MIB, 60, 30, 360, original_objects=objs, restore_copy_days=2)
    lines = dict((t, (a, b)) for t, a, b in AWS.cost_lines("original", scn))
    s = 100 * MIB / GIB
    assert lines["Glacier Deep Archive"][1] == pytest.approx(
        s * 0.02 + 100 * 0.1004 / 1000 + s * 0.023 * 2 / 30
    )
    assert lines["Standard"][1] == pytest.approx(100 * 0.0004 / 1000)
    for r in (0.0, 3.0, 17.5):
        for c in AWS.option_costs("original", scn, retrievals=r):
            a, b = lines[c.tier]
            assert c.total_usd == pytest.approx(a + b * r, rel=1e-12)


def test_break_even_with_aws_prices_agrees_with_direct_evaluation() -> None:
    objs = sr_archive_objects(300 * MIB, 5 * MIB, 4 * KB)
    scn = ArchiveScenario(20 * GIB, sum(o.nbytes for o in objs), 120, 30, 365, 600, sr_objects=objs)
    be = AWS.compare(scn).break_even()
    # 120 s of g5.xlarge per restore (0.034 $) against 20 GiB in Standard (0.46 $/month): ~2.3 days
    assert be.regime == "rarer_than" and 2 < be.interval_days < 3
    for interval in np.geomspace(0.1, 1e5, 120):
        saving = AWS.compare(dataclasses.replace(scn, access_interval_days=float(interval))).saving_usd
        if abs(saving) > 1e-9:
            assert (saving > 0) == any(lo < interval < hi for lo, hi in be.pays_for), interval


# -- (d) the tables -------------------------------------------------------------------------------------
def test_both_tables_load_with_finite_values() -> None:
    assert available_prices() == ["aws_s3", "ncs2023"]
    for name in available_prices():
        model = load_prices(name)
        cfg = model.to_config()
        assert CostModel.from_config(cfg) == model
        values = [cfg["gpu_usd_per_hour"], cfg["gb"], cfg["days_per_month"]]
        values += [v for t in cfg["tiers"] for k, v in t.items() if k not in ("name", "needs_restore")]
        assert all(isinstance(v, float) and math.isfinite(v) for v in values), name
    assert [t.name for t in AWS.tiers] == ["Standard", "Standard-IA", "Glacier Instant Retrieval",
                                           "Glacier Flexible Retrieval", "Glacier Deep Archive"]  # fmt: skip
    assert AWS.gb_bytes == GIB and AWS.standard_tier == "Standard"
    assert (AWS.gpu_usd_per_hour, AWS.cpu_usd_per_hour) == (1.006, 0.0816)
    da = AWS.tier("Glacier Deep Archive")
    assert (
        da.storage_usd_per_gb_month,
        da.min_storage_days,
        da.overhead_bytes,
        da.overhead_standard_bytes,
    ) == (0.00099, 180, 32 * KB, 8 * KB)
    assert AWS.tier("Standard-IA").min_object_bytes == 128 * KB and da.needs_restore


def test_ncs2023_is_the_old_default_and_the_study_configs_cost() -> None:
    ncs = load_prices("ncs2023")
    assert ncs == CostModel() and ncs == load_prices(PRICES_DIR / "ncs2023.py")
    scn = ArchiveScenario(10e9, 2e9, 600, 90, 360)
    assert ncs.compare(scn) == CostModel().compare(scn)
    assert cents(ncs.compare(scn).saving_usd) == 1.14  # test_cost.test_quarterly_access_by_hand
    configs = Path(__file__).resolve().parents[2] / "configs" / "archival"
    for path in sorted(configs.glob("study_*.py")):
        assert CostModel.from_config(Config.fromfile(str(path)).cost) == ncs, path.name


def test_price_table_errors(tmp_path: Path) -> None:
    with pytest.raises(CostModelError, match=r"unknown price table 'nope' \(known: aws_s3, ncs2023\)"):
        load_prices("nope")
    with pytest.raises(CostModelError, match="price table not found"):
        load_prices(tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("cost = dict(tiers={'A': dict(storage_usd_per_gb_month=0.01, retrieval_usd_per_gb=0,"
                   " min_days=30)})\n")  # fmt: skip
    with pytest.raises(
        CostModelError, match=r"bad.py: cost: bad tiers config: tier 'A': unknown key\(s\) \['min_days'\]"
    ):
        load_prices(bad)
    bad.write_text("tiers = {}\n")
    with pytest.raises(CostModelError, match=r"needs a cost = dict\(...\) section"):
        load_prices(bad)
    cold = "dict(storage_usd_per_gb_month=0.001, retrieval_usd_per_gb=0.02, needs_restore=True)"
    bad.write_text(f"cost = dict(tiers={{'Cold': {cold}}})\n")
    with pytest.raises(CostModelError, match="set standard_tier"):
        load_prices(bad)
    with pytest.raises(CostModelError, match="min_storage_days must be a finite number"):
        StorageTier("A", 0.01, 0, min_storage_days=-1)
    with pytest.raises(CostModelError, match="add up to"):
        scenario(100, 30, original_objects=(BilledObject(60),))
    with pytest.raises(CostModelError, match="packing must be one of"):
        scenario(100, 30, packing="zip")
    with pytest.raises(CostModelError, match="rewrite_days must be > 0"):
        scenario(100, 30, rewrite_days=0)
    with pytest.raises(CostModelError, match="share must be in"):
        BilledObject(10, share=0)
