"""The shared-model study: cluster sizes, the gain-share and TCO arithmetic, and a real run of the tool."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest

from basicvsr_archival.archival.shared_study import (
    MIN_GAIN_DB,
    analyse_shared,
    cluster_options,
    parse_sizes,
)
from basicvsr_archival.archival.study_config import StudyError, load_study
from basicvsr_archival.archival.throughput import ThroughputEntry, ThroughputProfile, save_profile
from basicvsr_archival.tools.archival_study import main as study_main
from basicvsr_archival.utils.cli import run_cli


def test_cluster_sizes_map_to_collection_settings():
    assert parse_sizes("4, 1,all,2,4") == (1, 2, 4, "all")
    for bad in ("0", "two", "1,-2"):
        with pytest.raises(StudyError, match="--cluster-sizes"):
            parse_sizes(bad)
    assert cluster_options(1, 8)["cluster.method"] == "per_video"
    assert cluster_options("all", 8)["cluster.method"] == "single"
    assert cluster_options(8, 8)["cluster.method"] == "single"
    opts = cluster_options(3, 8)  # ceil(8 / 3) = 3 clusters of at most 3
    assert (opts["cluster.method"], opts["cluster.k"], opts["cluster.max_videos_per_cluster"]) == (
        "kmeans",
        3,
        3,
    )


def _size(
    psnrs: list[float], nbytes: list[int], cluster_seconds: list[float], groups: list[list[str]]
) -> dict:
    """A measured cluster size of videos a, b, c, d (restore 2 s each)."""
    vids = {v: {"psnr": p, "ssim": 0.9, "vmaf": None, "bytes": b, "restore_seconds": 2.0, "frames": 30}
            for v, p, b in zip("abcd", psnrs, nbytes)}  # fmt: skip
    clusters = [{"id": f"c{i}", "videos": g, "model": "x", "iterations": 10, "finetune_seconds": s}
                for i, (g, s) in enumerate(zip(groups, cluster_seconds))]  # fmt: skip
    return {"clusters": clusters, "videos": vids}


def _measured() -> dict:
    """Four videos measured at cluster sizes 1 and 4 (the per-video models gain 1 dB over the base)."""
    base = {v: {"psnr": 30.0, "ssim": 0.9, "vmaf": None} for v in "abcd"}
    return {
        "scale": 2, "crf": 28, "videos": list("abcd"), "base": base,
        "original_bytes": {v: 2_000_000 for v in "abcd"},
        "sizes": {
            "1": _size([31.0, 31.2, 30.8, 31.0], [600_000] * 4, [40.0] * 4, [["a"], ["b"], ["c"], ["d"]]),
            "4": _size([30.9, 30.8, 30.9, 30.8], [450_000] * 4, [60.0], [list("abcd")]),
        },
        "lr_sizes": {"a": [100, 100], "b": [100, 100], "c": [400, 100], "d": [400, 100]},
    }  # fmt: skip


def test_share_of_per_video_gain_and_tco_by_hand(repo_root):
    study = load_study(repo_root / "configs" / "archival" / "study_tiny_ci.py")
    measured = _measured()
    a = analyse_shared(measured, study)
    r1, r4 = a["rows"]
    assert a["per_video_gain_db"] == pytest.approx(1.0)
    assert r1["share_of_per_video_gain"] == pytest.approx(1.0)
    assert r4["share_of_per_video_gain"] == pytest.approx(0.85)  # (30.85 - 30) / (31 - 30)
    assert (r1["finetune_seconds_per_video"], r4["finetune_seconds_per_video"]) == (40.0, 15.0)
    assert (r1["clusters"], r4["clusters"], r4["mean_cluster_videos"]) == (4, 1, 4.0)
    # never retrieved: cheapest tier Archive $0.004/GB-month over 365/30 months + 15 s at $0.085/h (CPU)
    never = next(t for t in r4["tco"] if math.isinf(t["interval_days"]))
    assert never["sr_tier"] == "Archive"
    assert never["sr_usd"] == pytest.approx(450_000 / 1e9 * 0.004 * 365 / 30 + 15 * 0.085 / 3600, rel=1e-12)
    assert never["original_usd"] == pytest.approx(2_000_000 / 1e9 * 0.004 * 365 / 30, rel=1e-12)
    small = json.loads(json.dumps(measured))  # per-video gain below the threshold: no share is counted
    for v in "abcd":
        small["sizes"]["1"]["videos"][v]["psnr"] = 30.0 + MIN_GAIN_DB / 2
    assert all(r["share_of_per_video_gain"] is None for r in analyse_shared(small, study)["rows"])


@pytest.fixture(scope="module")
def shared_run(collection_segments, repo_root, tmp_path_factory):
    """The tool's shared-model study on 3 real segments of 2 sources at cluster sizes 1 and all."""
    segs = [s for s in collection_segments if s.source in ("bigbuckbunny", "tree")]
    videos, base_clip = [str(s.path) for s in segs[:2] + segs[3:4]], str(segs[4].path)
    work = tmp_path_factory.mktemp("shared_study") / "work"
    config = repo_root / "configs" / "archival" / "study_tiny_ci.py"
    opts = [f"study.base_pretrain.video={base_clip}", "study.vmaf=False", "cluster.iters_per_video=2"]
    argv = [str(config), *videos, "-o", str(work), "--cluster-sizes", "1,all", "--no-progress"]
    argv += ["--cfg-options", *opts, "cluster.max_iters=3"]
    assert run_cli(study_main, argv) == 0
    return work, argv


def test_shared_study_measures_each_cluster_size(shared_run):
    work, _ = shared_run
    out = json.loads((work / "shared" / "shared.json").read_text())
    rows = {r["size"]: r for r in out["analysis"]["rows"]}
    assert sorted(rows) == ["1", "all"]
    assert (rows["1"]["clusters"], rows["all"]["clusters"]) == (3, 1)
    assert (rows["1"]["iterations_per_cluster"], rows["all"]["iterations_per_cluster"]) == ([2, 2, 2], [3])
    # one model instead of three: every video is charged a third of one model
    per_video = out["measured"]["sizes"]["1"]["videos"]
    shared = out["measured"]["sizes"]["all"]["videos"]
    assert all(shared[v]["bytes"] < per_video[v]["bytes"] for v in per_video)
    assert all(18.0 < v["psnr"] < 60.0 and v["frames"] == 14 and v["vmaf"] is None for v in shared.values())
    assert len(out["measured"]["base"]) == 3 and out["analysis"]["base"]["psnr"] > 18.0
    assert rows["all"]["finetune_seconds_per_video"] < rows["1"]["finetune_seconds_per_video"]
    for name, least in (("shared.md", 400), ("shared_quality.png", 5000), ("shared_tco.png", 5000)):
        assert (work / "shared" / name).stat().st_size > least
    assert "| all | 1 | [3] |" in (work / "shared" / "shared.md").read_text()


def test_shared_study_resumes_and_refuses_other_settings(shared_run, capsys):
    work, argv = shared_run
    stamps = {p: p.stat().st_mtime_ns for p in (work / "shared").rglob("videos/*.json")}
    assert len(stamps) == 6
    assert run_cli(study_main, argv) == 0  # nothing recomputed
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    for size in ("1", "all"):
        with sqlite3.connect(work / "shared" / f"size_{size}" / "store" / "catalog.sqlite") as db:
            attempts = [r[0] for r in db.execute("SELECT attempts FROM tasks")]
        assert attempts and set(attempts) == {1}
    capsys.readouterr()
    assert run_cli(study_main, [*argv[:-1], "cluster.max_iters=4"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0]


def test_restore_seconds_come_from_a_throughput_profile(repo_root, tmp_path):
    # c8n1 (the config's size) at 1e5 LR px/s for 100x100 and 2e5 for 400x100, on the CPU in fp32
    entries = [
        ThroughputEntry("c8n1", 8, 1, 2, "cpu", "x", "fp32", w, 100, 10, s)
        for w, s in ((100, 1.0), (400, 2.0))
    ]
    path = save_profile(ThroughputProfile(tuple(entries), {}), tmp_path / "profile.json")
    config = repo_root / "configs" / "archival" / "study_tiny_ci.py"
    study = load_study(config, {"tco.throughput_profile": str(path)})
    row = analyse_shared(_measured(), study)["rows"][1]
    # 30 frames: a, b at 1e4 px / 1e5 px/s = 3 s; c, d at 4e4 px / 2e5 px/s = 6 s
    assert row["restore_seconds_per_video"] == pytest.approx(4.5)
    assert row["restore_seconds_measured_per_video"] == pytest.approx(2.0)
    monthly = next(t for t in row["tco"] if t["interval_days"] == 30.0)
    plain = next(
        t
        for t in analyse_shared(_measured(), load_study(config))["rows"][1]["tco"]
        if t["interval_days"] == 30.0
    )
    # 365 / 30 retrievals, each 2.5 s more at $0.085/h
    assert monthly["sr_usd"] - plain["sr_usd"] == pytest.approx(365 / 30 * 2.5 * 0.085 / 3600, rel=1e-9)
