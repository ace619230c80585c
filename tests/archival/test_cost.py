"""Tests of basicvsr_archival.archival.cost: hand-computed cases to the cent, and monotonicity."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from basicvsr_archival.archival.cost import (
    DEFAULT_TIERS,
    GB_BINARY,
    ArchiveScenario,
    CostModel,
    CostModelError,
    StorageTier,
    sr_archive_bytes,
)

# Shared scenario: 10 GB original, 2 GB SR archive, 600 s restore per retrieval, 360-day horizon.
BASE = ArchiveScenario(
    original_bytes=10e9, sr_bytes=2e9, restore_seconds=600, access_interval_days=90, horizon_days=360
)


def cents(x: float) -> float:
    """Round to the cent."""
    return round(x, 2)


def test_default_tiers_match_the_paper() -> None:
    model = CostModel.from_config({})
    assert model.tiers == DEFAULT_TIERS
    assert [(t.name, t.storage_usd_per_gb_month, t.retrieval_usd_per_gb) for t in model.tiers] == [
        ("Frequent", 0.021, 0.0),
        ("Infrequent", 0.0125, 0.01),
        ("Archive", 0.004, 0.03),
    ]
    assert model.gpu_usd_per_hour == 0.302 and model.gb_bytes == 1e9 and model.days_per_month == 30


def test_quarterly_access_by_hand() -> None:
    # S_o = 10 GB, S_s = 2 GB, M = 360 / 30 = 12 months, R = 360 / 90 = 4 retrievals
    # compute per retrieval c = 600 s * 0.302 $/h / 3600 = 0.050333 $ -> 4 c = 0.201333 $
    # original:   Frequent   10 * 0.021 * 12                   = 2.52
    #             Infrequent 10 * 0.0125 * 12 + 10 * 0.01 * 4  = 1.50 + 0.40 = 1.90
    #             Archive    10 * 0.004 * 12 + 10 * 0.03 * 4   = 0.48 + 1.20 = 1.68  <- min
    # SR archive: Frequent   2 * 0.021 * 12 + 0.201333         = 0.504 + 0.201333 = 0.705333
    #             Infrequent 2 * 0.0125 * 12 + 2 * 0.01 * 4 + 4c = 0.30 + 0.08 + 0.201333 = 0.581333
    #             Archive    2 * 0.004 * 12 + 2 * 0.03 * 4 + 4c  = 0.096 + 0.24 + 0.201333 = 0.537333 <- min
    # saving = 1.68 - 0.537333 = 1.142667 $ = 68.02 % of 1.68
    res = CostModel().compare(BASE)
    assert (res.original.tier, res.sr.tier) == ("Archive", "Archive")
    assert cents(res.original.total_usd) == 1.68
    assert [cents(c.total_usd) for c in res.original_by_tier] == [2.52, 1.90, 1.68]
    assert [cents(c.total_usd) for c in res.sr_by_tier] == [0.71, 0.58, 0.54]
    assert cents(res.sr.storage_usd) == 0.10 and cents(res.sr.retrieval_usd) == 0.24
    assert cents(res.sr.compute_usd) == 0.20 and res.sr.finetune_usd == 0
    assert cents(res.saving_usd) == 1.14 and round(res.saving_pct, 2) == 68.02
    assert res.sr_pays


def test_finetune_share_by_hand() -> None:
    # fine-tuning 3600 s * 0.302 $/h / 3600 = 0.302 $, shared by 10 videos -> 0.0302 $ each
    # SR Archive = 0.537333 + 0.0302 = 0.567533 -> 0.57 $; saving = 1.68 - 0.567533 = 1.112467 = 66.22 %
    scn = dataclasses.replace(BASE, finetune_seconds=3600, cluster_size=10)
    res = CostModel().compare(scn)
    assert res.sr.tier == "Archive" and res.sr.finetune_usd == pytest.approx(0.0302)
    assert cents(res.sr.total_usd) == 0.57
    assert cents(res.saving_usd) == 1.11 and round(res.saving_pct, 2) == 66.22


def test_never_accessed_binary_gb_by_hand() -> None:
    # GB = 2**30 bytes: S_o = 1e10 / 2**30 = 9.313226 GB, S_s = 2e9 / 2**30 = 1.862645 GB; R = 0
    # original Archive: 9.313226 * 0.004 * 12 = 0.447035 -> 0.45 $
    # SR Archive:       1.862645 * 0.004 * 12 = 0.089407 -> 0.09 $ (no retrieval, no compute)
    # saving 0.357628 -> 0.36 $ = 80.00 % (= 1 - 2/10)
    model = CostModel.from_config({"gb": "binary"})
    assert model.gb_bytes == GB_BINARY
    res = model.compare(dataclasses.replace(BASE, access_interval_days=math.inf))
    assert (res.original.tier, res.sr.tier) == ("Archive", "Archive")
    assert cents(res.original.total_usd) == 0.45 and cents(res.sr.total_usd) == 0.09
    assert cents(res.saving_usd) == 0.36 and round(res.saving_pct, 2) == 80.00


def test_daily_access_sr_does_not_pay_by_hand() -> None:
    # R = 360: original Frequent 2.52 (Infrequent 1.5 + 36 = 37.5, Archive 0.48 + 108 = 108.48)
    # SR Frequent 0.504 + 360 * 0.050333 = 0.504 + 18.12 = 18.624
    # saving = 2.52 - 18.624 = -16.104 $ = -639.05 %
    res = CostModel().compare(dataclasses.replace(BASE, access_interval_days=1))
    assert (res.original.tier, res.sr.tier) == ("Frequent", "Frequent")
    assert cents(res.sr.total_usd) == 18.62 and cents(res.saving_usd) == -16.10
    assert round(res.saving_pct, 2) == -639.05 and not res.sr_pays


def test_break_even_by_hand() -> None:
    # Near the crossing (R ~ 40) both options sit in Frequent (original: 2.52 < 1.5 + 0.1*40 = 5.5 < 12.48):
    # 10*0.021*12 = 2*0.021*12 + 0.050333 R  ->  R* = (2.52 - 0.504) / 0.050333 = 40.0530
    # I* = 360 / 40.0530 = 8.9881 days; SR pays for every access interval longer than that.
    res = CostModel().compare(BASE)
    be = res.break_even()
    assert be.regime == "rarer_than"
    assert be.interval_days == pytest.approx(8.9881, abs=1e-4) == res.break_even_interval_days()
    assert be.pays_for == ((be.interval_days, math.inf),)
    at = CostModel().compare(dataclasses.replace(BASE, access_interval_days=be.interval_days))
    assert at.saving_usd == pytest.approx(0.0, abs=1e-9)


def test_break_even_window_by_hand() -> None:
    # Single tier Archive (0.004 $/GB-month, 0.03 $/GB), compute 0.36 $/h, fine-tune 10000 s for 1 video:
    # c = 600 * 0.36 / 3600 = 0.06 $/retrieval, F = 10000 * 0.36 / 3600 = 1.00 $
    # A(R) = 10 * (0.004 * 12 + 0.03 R) = 0.48 + 0.30 R
    # B(R) = 2 * (0.004 * 12 + 0.03 R) + 0.06 R + 1.00 = 1.096 + 0.12 R
    # D(R) = A - B = -0.616 + 0.18 R = 0 at R = 3.42222 -> I = 360 / 3.42222 = 105.1948 days
    # never accessed (R = 0): SR loses 0.616 $ (fine-tune not recovered); it pays for intervals < 105.19 d
    model = CostModel.from_config({"tiers": {"Archive": [0.004, 0.03]}, "gpu_usd_per_hour": 0.36})
    scn = dataclasses.replace(BASE, finetune_seconds=10000, access_interval_days=math.inf)
    res = model.compare(scn)
    assert cents(res.saving_usd) == -0.62
    be = res.break_even()
    assert be.regime == "window"
    assert be.interval_days == pytest.approx(105.1948, abs=1e-4)
    assert be.pays_for == ((0.0, be.interval_days),)


def test_break_even_never_and_always() -> None:
    # fine-tune share 1e6 s * 0.302 / 3600 = 83.9 $ > any original TCO (at most 2.52 $): never pays
    never = CostModel().compare(dataclasses.replace(BASE, finetune_seconds=1e6)).break_even()
    assert never.regime == "never" and never.interval_days == math.inf and never.pays_for == ()
    # free compute: SR = 2/10 of the original's cost at every R: always pays
    free = CostModel.from_config({"gpu_usd_per_hour": 0}).compare(BASE)
    assert free.break_even().regime == "always" and free.break_even_interval_days() is None


def test_break_even_grows_with_gpu_price() -> None:
    prices = [0.05, 0.1, 0.302, 1.0, 4.0]
    intervals = [CostModel(gpu_usd_per_hour=g).compare(BASE).break_even_interval_days() for g in prices]
    assert all(a < b for a, b in itertools.pairwise(intervals))
    # up to 1 $/h the crossing lies in Frequent (no retrieval fee), where
    # I* = H c / ((S_o - S_s) p M) with c = 600 g / 3600, i.e. proportional to the price g:
    # g = 0.302: I* = 360 * 0.050333 / (8 * 0.021 * 12) = 8.9881 d
    # g = 1.0:   I* = 360 * 0.166667 / 2.016 = 29.7619 d
    assert intervals[2] == pytest.approx(8.9881, abs=1e-4)
    assert intervals[3] == pytest.approx(29.7619, abs=1e-4)
    assert [i / g for i, g in zip(intervals[:4], prices)] == pytest.approx([intervals[0] / 0.05] * 4)
    # at 4 $/h (c = 0.6667 $) SR only pays below R ~ 3 retrievals, where both options sit in Archive


def test_saving_shrinks_with_more_frequent_access() -> None:
    model = CostModel()
    days = [math.inf, 3650, 365, 90, 30, 7, 1]
    results = [model.compare(dataclasses.replace(BASE, access_interval_days=d)) for d in days]
    pct = [r.saving_pct for r in results]
    assert all(a > b for a, b in itertools.pairwise(pct))
    # relative saving shrinks monotonically; the dollar saving need not: in the Archive tier the
    # original's retrieval fees (10 GB * 0.03 $) grow faster than the SR archive's fees + compute
    assert results[0].saving_usd < results[3].saving_usd  # 0.384 $ (never) < 1.143 $ (quarterly)
    # from monthly access on, both options sit in Frequent (no retrieval fee), where
    # saving = (S_o - S_s) p M - c R falls with R: 30 d 1.412 $, 7 d -0.573 $, 1 d -16.104 $
    usd = [r.saving_usd for r in results[4:]]
    assert [cents(u) for u in usd] == [1.41, -0.57, -16.10]
    assert all(a > b for a, b in itertools.pairwise(usd))


@pytest.mark.parametrize(
    ("gpu", "finetune", "tiers"),
    [
        (0.302, 0.0, None),
        (2.5, 5e4, None),
        (0.36, 1e4, {"Archive": [0.004, 0.03], "Frequent": [0.021, 0.0]}),
        (0.1, 2e3, {"Cold": [0.001, 0.09], "Warm": [0.01, 0.005]}),
    ],
)
def test_break_even_agrees_with_direct_evaluation(gpu: float, finetune: float, tiers: dict | None) -> None:
    cfg = {"gpu_usd_per_hour": gpu} | ({"tiers": tiers} if tiers else {})
    model = CostModel.from_config(cfg)
    scn = dataclasses.replace(BASE, finetune_seconds=finetune)
    be = model.compare(scn).break_even()
    for interval in np.geomspace(0.01, 1e6, 150):
        saving = model.compare(dataclasses.replace(scn, access_interval_days=float(interval))).saving_usd
        inside = any(lo < interval < hi for lo, hi in be.pays_for)
        if abs(saving) > 1e-9:
            assert (saving > 0) == inside, (interval, saving, be)


def test_config_roundtrip_and_errors() -> None:
    model = CostModel.from_config(
        {"tiers": [{"name": "Hot", "storage_usd_per_gb_month": 0.02, "retrieval_usd_per_gb": 0.0}],
         "gpu_usd_per_hour": 1.2, "gb": 2**30, "days_per_month": 30.4}
    )  # fmt: skip
    assert model.tiers == (StorageTier("Hot", 0.02, 0.0),) and model.gb_bytes == 2**30
    assert CostModel.from_config(model.to_config()) == model
    bad_configs = [
        ({"gpu": 1}, "unknown cost-model key"),
        ({"gb": "megabyte"}, "gb must be a byte count"),
        ({"tiers": {"A": [0.01, -1]}}, "retrieval price must be a finite number >= 0"),
        ({"tiers": [{"name": "A", "storage_usd_per_gb_month": 1, "retrieval_usd_per_gb": 0}] * 2}, "unique"),
        ({"tiers": {"A": [0.01]}}, "bad tiers config"),
        ({"tiers": []}, "at least one storage tier"),
    ]
    for cfg, msg in bad_configs:
        with pytest.raises(CostModelError, match=msg):
            CostModel.from_config(cfg)
    with pytest.raises(CostModelError, match="access_interval_days must be > 0"):
        dataclasses.replace(BASE, access_interval_days=0)
    with pytest.raises(CostModelError, match="cluster_size"):
        dataclasses.replace(BASE, cluster_size=0)
    with pytest.raises(CostModelError, match="original_bytes must be > 0"):
        dataclasses.replace(BASE, original_bytes=0)


def test_sr_archive_bytes() -> None:
    # LR 1.5 GB + a 30 MB model shared by 10 videos + 4 kB manifest = 1.5e9 + 3e6 + 4e3
    assert sr_archive_bytes(1.5e9, 30e6, 4e3, model_shared_by=10) == 1.5e9 + 3e6 + 4e3
    with pytest.raises(CostModelError):
        sr_archive_bytes(1, 1, model_shared_by=0)
