"""Per-video storage plan: hand-computed choices and break-even, access models, the tool on a real store."""

from __future__ import annotations

import json
import math

import pytest

from basicvsr_archival.archival.billing import sr_archive_objects
from basicvsr_archival.archival.collection import archive_collection
from basicvsr_archival.archival.plan import (
    PlanError,
    PlanOption,
    PlanVideo,
    Policy,
    break_even_views,
    make_plan,
    plan_video,
    read_access_csv,
    scale_length,
    zipf_access,
)
from basicvsr_archival.archival.prices import load_prices
from basicvsr_archival.tools.plan_storage import main as plan_main
from basicvsr_archival.utils.cli import run_cli

NCS = load_prices(
    "ncs2023"
)  # Frequent 0.021/0, Infrequent 0.0125/0.01, Archive 0.004/0.03 $/GB; GPU 0.302 $/h
POLICY = Policy("psnr", 0.5, None, 360.0, "per_member")  # 12 months


def _video(vid: str = "v", sr_psnr: float = 35.8) -> PlanVideo:
    """1 GB original at 36 dB; a 0.25 GB SR archive restored in 360 s on a GPU (0.0302 $ per retrieval)."""
    sr = PlanOption("sr", 0.25e9, {"psnr": sr_psnr}, restore_seconds=360.0, device="cuda")
    return PlanVideo(vid, PlanOption("full", 1e9, {"psnr": 36.0}), (sr,))


def test_choice_and_break_even_by_hand():
    # original: Archive 0.048 + 0.36 v (R = 12 v retrievals at 0.03 $/GB);
    # SR: Archive 0.012 + 12 v (0.0075 + 0.0302) (retrieval of 0.25 GB + 360 GPU seconds)
    never = plan_video(_video(), 0.0, NCS, POLICY)
    assert (never["choice"], never["tier"]) == ("sr", "Archive")
    assert never["tco_usd"] == pytest.approx(0.012) and never["tco_original_usd"] == pytest.approx(0.048)
    assert break_even_views(_video(), NCS, POLICY) == pytest.approx(0.036 / 0.0924, rel=1e-9)
    busy = plan_video(_video(), 1.0, NCS, POLICY)  # orig: min(0.408, 0.27, 0.252) = Frequent 0.252
    assert (busy["choice"], busy["tier"], busy["tco_usd"]) == ("original", "Frequent", pytest.approx(0.252))
    # below the quality floor (36 - 0.5): never chosen, break-even 0
    assert plan_video(_video(sr_psnr=35.0), 0.0, NCS, POLICY)["choice"] == "original"
    assert break_even_views(_video(sr_psnr=35.0), NCS, POLICY) == 0.0


def test_catalog_summary_by_hand():
    videos = [_video("a"), _video("b"), PlanVideo("c", PlanOption("full", 3e9, {"psnr": 36.0}))]
    plan = make_plan(videos, {"a": 0.0, "b": 1.0, "c": 0.0}, NCS, POLICY, "ncs2023")
    s = plan["summary"]
    assert s["share_of_videos_sr_pays"] == pytest.approx(1 / 3)
    assert s["share_of_bytes_sr_pays"] == pytest.approx(1e9 / 5e9)
    assert s["saving_usd"] == pytest.approx(0.048 - 0.012)
    assert s["break_even_views_per_month"] == pytest.approx(0.036 / 0.0924)  # median of (x, x, 0)


def test_length_scale_by_hand():
    """x10: streams, the original and restores grow; the shared model, the manifest and fine-tuning do not."""
    objs = sr_archive_objects(0.2e9, 0.1e9, 1e3, model_shared_by=2)
    sr = PlanOption("sr", 0.25e9 + 1e3, {"psnr": 35.8}, 360.0, 50.0, objs, "cuda")
    long = scale_length(PlanVideo("v", PlanOption("full", 1e9, {"psnr": 36.0}), (sr,)), 10.0)
    assert long.original.bytes == 1e10 and long.original.quality == {"psnr": 36.0}
    (opt,) = long.sr
    assert [(o.nbytes, o.share) for o in opt.objects] == [(2e9, 1.0), (0.1e9, 0.5), (1e3, 1.0)]
    assert opt.bytes == pytest.approx(2.05e9 + 1e3) and opt.restore_seconds == 3600.0
    assert opt.finetune_seconds == 50.0 and opt.quality == {"psnr": 35.8}
    # no objects: all of the option grows. At 0 views, Archive 0.048 $/GB over 12 months: 2 GB vs 0.5 GB
    row = plan_video(scale_length(_video(), 2.0), 0.0, NCS, POLICY)
    assert row["tco_original_usd"] == pytest.approx(0.096) and row["tco_usd"] == pytest.approx(0.024)
    with pytest.raises(PlanError, match="length scale"):
        scale_length(_video(), 0.0)


def test_access_models(tmp_path):
    ids = [f"v{i}" for i in range(10)]
    z = zipf_access("zipf:s=1.1,mean=2.0", ids)
    assert sorted(z) == ids and sum(z.values()) == pytest.approx(20.0)
    top = sorted(z.values(), reverse=True)
    assert top[0] / top[1] == pytest.approx(2**1.1) and z == zipf_access("zipf:s=1.1,mean=2.0,seed=0", ids)
    with pytest.raises(PlanError, match="expected zipf"):
        zipf_access("pareto:a=1", ids)
    csv = tmp_path / "access.csv"
    csv.write_text("id,views_per_month\nv0,1.5\nv1,0\n")
    assert read_access_csv(csv, ["v0", "v1"]) == {"v0": 1.5, "v1": 0.0}
    with pytest.raises(PlanError, match="no views_per_month for 1 video"):
        read_access_csv(csv, ["v0", "v1", "v2"])
    csv.write_text("id,views_per_month\nv0,lots\n")
    with pytest.raises(PlanError, match="line 2: views_per_month must be a number"):
        read_access_csv(csv, ["v0"])


@pytest.fixture(scope="module")
def small_store(collection_segments, repo_root, tmp_path_factory):
    """Two real segments of one source sharing one model (2 fine-tuning iterations)."""
    segs = [s for s in collection_segments if s.source == "tree"][:2]
    out = tmp_path_factory.mktemp("plan") / "store"
    opts = {"cluster.method": "single", "cluster.max_videos_per_cluster": None, "cluster.iters_per_video": 1,
            "cluster.max_iters": 2}  # fmt: skip
    config = repo_root / "configs/archival/collection_tiny_ci.py"
    res = archive_collection(config, [s.path for s in segs], out, cfg_options=opts, progress=False)
    assert res.ok
    return out, [s.path.stem for s in segs]


def test_plan_storage_tool_on_a_store(small_store, tmp_path, capsys):
    store, ids = small_store
    access = tmp_path / "access.csv"
    access.write_text("id,views_per_month\n" + "".join(f"{i},{v}\n" for i, v in zip(ids, (0.0, 50.0))))
    out = tmp_path / "plan"
    argv = [str(store), "--access", str(access), "-o", str(out), "--prices", "aws_s3", "--min-quality", "15",
            "--no-progress"]  # fmt: skip
    assert run_cli(plan_main, argv) == 0
    plan = json.loads((out / "plan.json").read_text())
    rows = {r["id"]: r for r in plan["videos"]}
    assert sorted(rows) == sorted(ids) and plan["summary"]["prices"] == "aws_s3"
    for r in rows.values():
        assert r["eligible_options"] == ["sr_archive"]  # tiny model still above 15 dB
        assert math.isfinite(r["tco_usd"]) and r["tco_usd"] <= r["tco_original_usd"] + 1e-15
    # the summary agrees with the rows
    saving = sum(r["tco_original_usd"] - r["tco_usd"] for r in rows.values())
    assert plan["summary"]["saving_usd"] == pytest.approx(saving)
    share = sum(r["choice"] == "sr" for r in rows.values()) / 2
    assert plan["summary"]["share_of_videos_sr_pays"] == pytest.approx(share)
    assert len(plan["curve"]["views_per_month"]) == 41
    for name, least in (("plan.md", 300), ("tco_vs_views.png", 5000), ("saving_vs_access.png", 5000)):
        assert (out / name).stat().st_size > least
    measured = sorted((out / "measure").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in measured]
    assert len(measured) == 2 and all(json.loads(p.read_text())["psnr"] > 15 for p in measured)
    assert run_cli(plan_main, argv) == 0  # measurements reused
    assert [p.stat().st_mtime_ns for p in measured] == stamps
    long = tmp_path / "plan_x1000"
    assert run_cli(plan_main, [*argv[:4], str(long), *argv[5:], "--length-scale", "1000"]) == 0
    plan_long = json.loads((long / "plan.json").read_text())
    assert plan_long["summary"]["length_scale"] == 1000.0
    assert "1000 times as long" in (long / "plan.md").read_text()
    for r in plan_long["videos"]:
        assert r["original_bytes"] == pytest.approx(1000 * rows[r["id"]]["original_bytes"])
    with pytest.raises(SystemExit) as exc:
        plan_main([*argv, "--length-scale", "0"])
    assert exc.value.code == 2
    capsys.readouterr()
    assert run_cli(plan_main, [str(store), "--access-model", "zipf:s=1", "-o", str(tmp_path / "p2"),
                               "--min-quality", "15"]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected zipf" in err[0]
