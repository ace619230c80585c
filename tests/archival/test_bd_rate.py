"""BD-rate (Bjøntegaard delta rate) against hand-checkable cases: scaled curves, shifted lines, a cubic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from basicvsr_archival.archival.study_analysis import bd_rate
from basicvsr_archival.archival.study_config import BD_METHODS, StudyError

# An anchor rate-distortion curve: 4 points, rates in bytes, quality in dB (not a polynomial in quality).
RATES = [1000.0, 2000.0, 4500.0, 9000.0]
PSNR = [30.0, 33.5, 36.0, 39.0]


@pytest.mark.parametrize("method", BD_METHODS)
def test_scaled_rates_give_the_scale(method: str) -> None:
    # curve B = curve A with every rate x0.8: at any quality B needs 20 % fewer bits
    r = bd_rate(RATES, PSNR, [0.8 * x for x in RATES], PSNR, method)
    assert r.percent == pytest.approx(-20.0, abs=1e-9)
    assert (r.flag, r.method, r.overlap, r.anchor_points, r.test_points) == ("ok", method, (30.0, 39.0), 4, 4)
    assert r.overlap_fraction == 1.0
    # and the anchor seen from B needs 1 / 0.8 = 1.25 times the bits
    assert bd_rate([0.8 * x for x in RATES], PSNR, RATES, PSNR, method).percent == pytest.approx(25.0)
    assert bd_rate(RATES, PSNR, RATES, PSNR, method).percent == pytest.approx(0.0, abs=1e-12)


def test_two_points_use_a_straight_line() -> None:
    # A: log-rate linear from (30 dB, 100 B) to (40 dB, 200 B); B: the same line 2 dB to the right.
    # On the overlap [32, 40] log r_B(q) - log r_A(q) = -(2 / 10) ln 2, so BD = 2 ** -0.2 - 1 = -12.94 %.
    r = bd_rate([100, 200], [30, 40], [100, 200], [32, 42])
    assert r.percent == pytest.approx((2**-0.2 - 1) * 100, rel=1e-12)
    assert (r.flag, r.method, r.overlap) == ("linear_fit", "linear", (32.0, 40.0))
    # a 2-point curve against a 4-point one is still flagged (the 2-point side is a line)
    assert bd_rate(RATES, PSNR, [1500, 5000], [33, 37]).flag == "linear_fit"


def test_cubic_fit_is_exact_for_cubic_curves() -> None:
    # log r_A(q) = q^3 / 3000 (a cubic), log r_B(q) = log r_A(q) + 0.01 q. Over the overlap [30, 40]
    # the mean of 0.01 q is 0.35, so BD-rate = exp(0.35) - 1 = +41.907 % (VCEG-M33 fit is exact here).
    q = np.array([30.0, 33.0, 37.0, 40.0])
    ra = np.exp(q**3 / 3000)
    rb = ra * np.exp(0.01 * q)
    r = bd_rate(ra, q, rb, q, "cubic")
    assert r.percent == pytest.approx(math.expm1(0.35) * 100, rel=1e-9)
    assert r.percent == pytest.approx(41.9068, abs=1e-4)
    # piecewise cubic interpolation is not exact for this curve, but close
    assert bd_rate(ra, q, rb, q, "pchip").percent == pytest.approx(41.9068, abs=0.5)


def test_partial_overlap_uses_the_common_quality_range() -> None:
    # both curves are the same straight line in (quality, log rate) up to a factor 0.5 on B, B covers
    # only [35, 45]: the average is taken over [35, 40], the answer is still exactly -50 %
    qa = [30.0, 32.0, 36.0, 40.0]
    qb = [35.0, 38.0, 41.0, 45.0]
    line = lambda q: math.exp(0.2 * q)  # noqa: E731
    r = bd_rate([line(q) for q in qa], qa, [0.5 * line(q) for q in qb], qb)
    assert r.percent == pytest.approx(-50.0, abs=1e-9)
    assert r.overlap == (35.0, 40.0) and r.overlap_fraction == pytest.approx(0.5)


def test_disjoint_quality_ranges_are_flagged_not_extrapolated() -> None:
    r = bd_rate(RATES, PSNR, [500, 800, 1200], [22.0, 24.0, 26.0])
    assert math.isnan(r.percent) and r.flag == "no_overlap" and r.overlap is None
    assert r.to_dict()["percent"] is None  # JSON: null, never NaN
    # touching ranges (a single common quality) have no width to average over either
    assert bd_rate([1, 2], [20, 30], [3, 4], [30, 40]).flag == "no_overlap"


def test_too_few_points_and_unusable_values() -> None:
    r = bd_rate(RATES, PSNR, [900.0], [35.0])
    assert math.isnan(r.percent) and r.flag == "too_few_points" and r.test_points == 1
    # zero / negative rates and NaN qualities are dropped before fitting
    r = bd_rate(RATES, PSNR, [0.0, 800.0, -5.0, 1600.0], [31.0, float("nan"), 33.0, 36.0])
    assert r.flag == "too_few_points"


def test_point_order_and_ties_do_not_matter() -> None:
    order = [2, 0, 3, 1]
    r1 = bd_rate(RATES, PSNR, [0.7 * x for x in RATES], PSNR)
    r2 = bd_rate([RATES[i] for i in order], [PSNR[i] for i in order], [0.7 * RATES[i] for i in order],
                 [PSNR[i] for i in order])  # fmt: skip
    assert r1.percent == pytest.approx(r2.percent) == pytest.approx(-30.0)
    # two encodes at the same quality: their log rates are averaged (geometric mean of the rates)
    r = bd_rate([100, 400], [30, 40], [50, 200, 200], [30, 40, 40])
    assert r.percent == pytest.approx(-50.0)


def test_unknown_method_is_an_error() -> None:
    with pytest.raises(StudyError, match="method must be one of"):
        bd_rate(RATES, PSNR, RATES, PSNR, "akima")
