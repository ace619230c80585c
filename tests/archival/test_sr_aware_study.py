"""SR-aware study (BD-rate vs uniform CRF on post-SR PSNR) and the x264 zones mode of SR-aware encoding.

The end-to-end tests run on the two-source clip of conftest (16 frames, 128x72: 8 of Big Buck Bunny,
8 of tree) with the tiny_ci c8n1 x2 model; x264 single-threaded so that bytes are the same everywhere.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from basicvsr_archival.archival.sr_aware_study import (
    analyse_sr_aware,
    analyse_video,
    cbr_codec,
    uniform_psnr_at,
)
from basicvsr_archival.archival.sr_aware_zones import (
    corrected_table,
    frame_bytes,
    segment_bytes,
    with_zones,
    zones_value,
)

UNIFORM = [
    {"crf": 24, "bytes": 4000, "payload": 3000, "psnr": 34.0},
    {"crf": 30, "bytes": 2000, "payload": 1500, "psnr": 32.0},
    {"crf": 36, "bytes": 1000, "payload": 750, "psnr": 30.0},
]


def _record(shift_db: float, byte_factor: float = 1.0) -> dict:
    """A video whose SR-aware points are ``shift_db`` above the uniform ones at ``byte_factor`` x bytes."""
    pts = [
        {"budget_crf": u["crf"], "bytes": round(u["bytes"] * byte_factor),
         "payload": round(u["payload"] * byte_factor), "psnr": u["psnr"] + shift_db,
         "predicted_psnr": u["psnr"] + shift_db + 0.1, "crfs": [24, 30]}
        for u in UNIFORM
    ]  # fmt: skip
    same = [{"crf": u["crf"], "bytes": u["payload"] * 1.2, "psnr": u["psnr"]} for u in UNIFORM]
    return {"uniform": UNIFORM, "sr_aware": pts, "uniform_same_gops": same}


def test_equal_bytes_gain_and_bd_rate_by_hand():
    """At the uniform curve's own byte counts the gain is exactly the shift; the BD-rate has its sign."""
    r = analyse_video(_record(0.5))
    assert r["bytes"]["gain_db"] == pytest.approx([0.5, 0.5, 0.5], abs=1e-12)
    assert r["payload"]["mean_gain_db"] == pytest.approx(0.5, abs=1e-12)
    assert r["bytes"]["bd_rate"] < 0 and r["payload"]["bd_rate"] < 0
    # same PSNR at half the bytes: the log-rate curve moves down by log 2 everywhere -> -50 %
    half = analyse_video(_record(0.0, 0.5))
    assert half["bytes"]["bd_rate"] == pytest.approx(-50.0, abs=0.2)
    # against uniform with the same closed GOPs (1.2 x payload): SR-aware's payload is 1/1.2 of it
    assert half["same_gops"]["bd_rate"] == pytest.approx((0.5 / 1.2 - 1) * 100, abs=0.2)
    assert r["distinct_crfs"] == 2 and r["prediction_error_db"] == pytest.approx(-0.1)
    assert uniform_psnr_at(UNIFORM, 500) is None and uniform_psnr_at(UNIFORM, 4001) is None
    assert uniform_psnr_at(UNIFORM, 2000) == pytest.approx(32.0)
    assert 30.0 < uniform_psnr_at(UNIFORM, 1414) < 32.0


def test_summary_means_over_videos_and_goal():
    """The summary averages the finite per-video BD-rates; the goal is <= -10 % on file bytes."""
    measured = {"videos": {"a": _record(0.0, 0.5), "b": _record(0.0, 1.0)}}
    a = analyse_sr_aware(measured)
    s = a["summary"]
    assert s["videos"] == 2 and s["bytes"]["videos_with_bd_rate"] == 2
    assert s["bytes"]["mean_bd_rate"] == pytest.approx((-50.0 + 0.0) / 2, abs=0.2)
    assert s["goal_met"] and s["goal_bd_rate"] == -10.0
    worse = analyse_sr_aware({"videos": {"b": _record(-0.5)}})["summary"]
    assert worse["bytes"]["mean_bd_rate"] > 0 and not worse["goal_met"]


def test_constant_bitrate_codec_by_hand():
    """1000 bytes over 16 frames at 25 fps: 12500 bit/s, a VBV buffer of one 8-frame segment (4000 bits)."""
    from basicvsr_archival.archival.codec import CodecSettings

    rated = cbr_codec(CodecSettings(crf=30, extra_args=("-threads", "1")), 1000, 16, 25.0, 8)
    assert (rated.crf, rated.bitrate) == (None, "12500")
    assert rated.extra_args == ("-threads", "1", "-maxrate", "12500", "-bufsize", "4000")


def test_zones_value_and_x264_params_merge():
    """One ``start,end,crf=C`` zone per segment (inclusive, last one short), merged into -x264-params."""
    from basicvsr_archival.archival.codec import CodecSettings

    assert zones_value(8, 20, [30, 24, 40]) == "0,7,crf=30/8,15,crf=24/16,19,crf=40"
    plain = with_zones(CodecSettings(extra_args=("-threads", "1")), "0,7,crf=30")
    assert plain.extra_args == ("-threads", "1", "-x264-params", "zones=0,7,crf=30")
    merged = with_zones(CodecSettings(extra_args=("-x264-params", "open-gop=0")), "0,7,crf=30")
    assert merged.extra_args == ("-x264-params", "open-gop=0:zones=0,7,crf=30")


@pytest.fixture(scope="module")
def zones_run(two_source_clip: Path, repo_root: Path, tmp_path_factory):
    """SR-aware encode of the clip in zones mode (segments of 8, CRFs 26/30/38) with a seeded tiny model."""
    import torch
    from mmengine.config import Config

    from basicvsr_archival.archival.codec import CodecSettings
    from basicvsr_archival.archival.sr_aware import sr_aware_encode
    from basicvsr_archival.archival.sr_aware_settings import SrAwareSettings
    from basicvsr_archival.models.builder import build_restorer

    cfg = Config.fromfile(str(repo_root / "configs/archival/tiny_ci.py"))
    codec = CodecSettings.from_dict({**cfg.codec, "crf": 30, "extra_args": ("-threads", "1")})
    torch.manual_seed(0)
    model = build_restorer(cfg.model).eval()
    settings = SrAwareSettings(enabled=True, mode="zones", gop=8, crfs=(26, 38))
    work = tmp_path_factory.mktemp("zones")
    res = sr_aware_encode(two_source_clip, work / "zoned.mp4", codec, settings, model, work, keep_ladder=True)
    return res, work


def test_zones_stream_fits_the_uniform_budget_and_decodes(zones_run):
    """One ordinary stream of 16 frames whose payload fits the budget (the CRF 30 stream's payload); the
    table's bytes of every rung add up to that rung's whole-stream payload, frame by frame."""
    from basicvsr_archival.archival.sr_aware import stream_payload
    from basicvsr_archival.utils.ffmpeg import count_video_frames, probe_video

    res, work = zones_run
    info = probe_video(res.dst)
    assert (info.width, info.height, count_video_frames(res.dst, decode=True)) == (64, 36, 16)
    assert res.table.crfs == (26, 30, 38) and res.table.frames == (8, 8)
    for j, crf in enumerate(res.table.crfs):
        whole = work / "ladder" / f"c{crf}.mp4"
        assert res.table.total_bytes([j, j]) == stream_payload(whole).bytes == sum(frame_bytes(whole))
        assert len(frame_bytes(whole)) == 16
    assert res.budget == res.table.total_bytes([1, 1]) and res.goal_met
    assert res.stream_bytes == stream_payload(res.dst).bytes <= res.budget
    record = res.to_dict()
    assert [s["crf"] for s in record["segments"]] == res.crfs and len(res.crfs) == 2
    assert all(c in (26, 30, 38) for c in res.crfs)
    assert res.table.mean_psnr(res.choice) >= res.table.mean_psnr([1, 1])  # never below uniform CRF 30


def test_zone_table_bytes_are_segment_bytes_and_corrections_replace_one_rung(zones_run):
    """``segment_bytes`` of a ladder stream is its table column; a correction changes chosen rungs only."""
    res, work = zones_run
    for j, crf in enumerate(res.table.crfs):
        assert segment_bytes(work / "ladder" / f"c{crf}.mp4", 8) == [row[j] for row in res.table.bytes]
    fixed = corrected_table(res.table, [0, 2], [111, 222])
    assert fixed.bytes[0] == (111, *res.table.bytes[0][1:])
    assert fixed.bytes[1] == (*res.table.bytes[1][:2], 222)
    assert fixed.psnr == res.table.psnr and fixed.total_bytes([0, 2]) == 333


def test_study_tool_sr_aware_report_and_resume(two_source_clip, repo_root, tmp_path, capsys):
    """``archival_study --sr-aware``: per video a uniform curve of 3 points and SR-aware points at the 2
    budgets asked for, a report whose mean BD-rate is the JSON's, each SR-aware stream within its budget;
    a budget off the ladder is one error line; a re-run measures nothing."""
    from basicvsr_archival.tools.archival_study import main
    from basicvsr_archival.utils.cli import run_cli

    argv = [
        str(repo_root / "configs/archival/study_tiny_ci.py"), str(two_source_clip), "-o", str(tmp_path / "w"),
        "--sr-aware", "--no-progress", "--cfg-options", "codec.extra_args=[-threads,1]",
        "codec.sr_aware.enabled=True", "codec.sr_aware.gop=8", "codec.sr_aware.crfs=[26,30,38]",
        "study.variants=[full,sr_finetuned]", "study.sr_aware_budgets=[26,30]",
    ]  # fmt: skip
    bad = [*argv[:-1], "study.sr_aware_budgets=[27]"]
    assert run_cli(main, bad) == 1
    assert "study.sr_aware_budgets [27] must be CRFs of the ladder [26, 30, 38]" in capsys.readouterr().err
    assert main(argv) == 0
    out = tmp_path / "w" / "sr_aware"
    data = json.loads((out / "sr_aware.json").read_text())
    rec = data["measured"]["videos"]["clip"]
    assert data["measured"]["model_crf"] == 30 and rec["segments"] == 2 and rec["frames"] == 16
    assert [u["crf"] for u in rec["uniform"]] == [26, 30, 38]
    assert [p["budget_crf"] for p in rec["sr_aware"]] == [26, 30] == data["measured"]["budget_crfs"]
    psnr = [u["psnr"] for u in rec["uniform"]]
    assert all(math.isfinite(q) and 15 < q < 60 for q in psnr) and psnr[0] > psnr[-1]
    for u, p in zip(rec["uniform"], rec["sr_aware"]):  # closed GOPs may not fit the smallest budget
        assert p["budget"] == u["payload"] and p["goal_met"] == (p["payload"] <= p["budget"])
    assert rec["sr_aware"][0]["goal_met"] and rec["sr_aware"][0]["payload"] > rec["sr_aware"][-1]["payload"]
    mean = data["analysis"]["summary"]["bytes"]["mean_bd_rate"]
    row = data["analysis"]["videos"]["clip"]
    assert mean == row["bytes"]["bd_rate"] and np.isfinite(mean)
    assert f"{mean:+.1f} % on file" in (out / "sr_aware.md").read_text()
    assert (out / "sr_aware_rd.png").stat().st_size > 10_000
    assert f"mean BD-rate: {mean:+.1f} %" in capsys.readouterr().out
    assert [c["budget_crf"] for c in rec["cbr"]] == [26, 30] and "bd_rate" in row["cbr"]
    assert all(c["bytes"] > c["payload"] > 0 and 15 < c["psnr"] < 60 for c in rec["cbr"])
    assert "| vs constant bitrate |" in (out / "sr_aware.md").read_text()
    points = tmp_path / "w" / "videos" / "clip" / "sr_aware" / "points.json"
    before = points.stat().st_mtime_ns
    assert main(argv) == 0 and points.stat().st_mtime_ns == before
    # a record from before the constant-bitrate baseline: only that is measured and added
    old = json.loads(points.read_text())
    cbr = old.pop("cbr")
    points.write_text(json.dumps(old))
    streams = sorted(points.parent.glob("sr_aware_budget_crf*.mp4"))
    stamps = [f.stat().st_mtime_ns for f in streams]
    assert main(argv) == 0 and len(streams) == 2
    again = json.loads(points.read_text())
    assert again["cbr"] == cbr and again["sr_aware"] == old["sr_aware"]
    assert [f.stat().st_mtime_ns for f in streams] == stamps
