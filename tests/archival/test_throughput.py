"""Throughput profile: log-log interpolation by hand, the JSON round trip, bad files, a real measurement."""

from __future__ import annotations

import json
import math

import pytest

from basicvsr_archival.archival.throughput import (
    ThroughputEntry,
    ThroughputError,
    ThroughputProfile,
    load_profile,
    measure,
    save_profile,
)


def _entry(w: int, h: int, seconds: float, frames: int = 10, model: str = "c8n1") -> ThroughputEntry:
    return ThroughputEntry(model, 8, 1, 2, "cpu", "test cpu", "fp32", w, h, frames, seconds)


def test_restore_seconds_from_the_profile_by_hand():
    # 100x100 at 1e5 px/s (10 frames in 1 s), 400x100 at 2e5 px/s (10 frames of 4e4 px in 2 s)
    prof = ThroughputProfile((_entry(100, 100, 1.0), _entry(400, 100, 2.0)), {})
    assert prof.pixel_rate("c8n1", "cpu", "fp32", 10_000) == pytest.approx(1e5)
    # 200x100 = 2e4 px: halfway in log p between 1e4 and 4e4 -> rate sqrt(1e5 * 2e5)
    rate = math.sqrt(1e5 * 2e5)
    assert prof.pixel_rate("c8n1", "cpu", "fp32", 20_000) == pytest.approx(rate)
    assert prof.restore_seconds("c8n1", "cpu", "fp32", 300, 200, 100) == pytest.approx(300 * 2e4 / rate)
    # beyond the measured sizes the rate stays at the nearest one's
    assert prof.restore_seconds("c8n1", "cpu", "fp32", 30, 1000, 1000) == pytest.approx(30 * 1e6 / 2e5)
    assert prof.restore_seconds("c8n1", "cpu", "fp32", 30, 50, 50) == pytest.approx(30 * 2500 / 1e5)
    with pytest.raises(ThroughputError, match="no entry for c16n2 on cpu in fp32"):
        prof.restore_seconds("c16n2", "cpu", "fp32", 1, 10, 10)


def test_profile_file_round_trip_and_bad_files(tmp_path):
    prof = ThroughputProfile((_entry(96, 54, 0.5), _entry(192, 108, 1.5, model="c16n2")), {"cpu": "x"})
    path = save_profile(prof, tmp_path / "p" / "profile.json")
    back = load_profile(path)
    assert back.entries == prof.entries and back.machine == {"cpu": "x"}
    assert json.loads(path.read_text())["entries"][0]["fps"] == pytest.approx(20.0)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ThroughputError, match=r"bad\.json: cannot read"):
        load_profile(tmp_path / "bad.json")
    (tmp_path / "v0.json").write_text(json.dumps({"version": 0, "entries": []}))
    with pytest.raises(ThroughputError, match="not a throughput profile"):
        load_profile(tmp_path / "v0.json")


def test_measured_profile_predicts_a_size_it_was_not_fitted_on():
    entries = measure(["c8n1"], "cpu", ["fp32"], [(32, 24), (64, 48)], frames=4, repeats=1)
    assert [(e.lr_width, e.lr_height, e.frames) for e in entries] == [(32, 24, 4), (64, 48, 4)]
    assert all(e.seconds > 0 and e.fps > 0 for e in entries)
    prof = ThroughputProfile(tuple(entries), {})
    check = measure(["c8n1"], "cpu", ["fp32"], [(48, 32)], frames=4, repeats=1)[0]
    predicted = prof.restore_seconds("c8n1", "cpu", "fp32", 4, 48, 32)
    assert 0.25 < predicted / check.seconds < 4.0  # a loaded 2-core host: within a factor of 4
