"""The archival study: TCO curves by hand, and the CLI end to end on real footage (REDS demo frames).

The end-to-end run is tiny on purpose: 6 frames of 132x74 (the study crops them to 132x72 so the
x2 LR frames have whole 4:2:0 chroma samples), two CRFs, one scale, the c8n1 model of ``tiny_ci``
with two fine-tuning iterations, and a base pre-trained for one iteration on *other* frames of the
footage. The numbers are meaningless as quality results; what is checked is that every number is
measured, finite, consistent between report.md / results.json / the archives / the cost model, and
that a re-run recomputes nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from basicvsr_archival.archival import container
from basicvsr_archival.archival.cost import ArchiveScenario, CostModel
from basicvsr_archival.archival.study_analysis import bd_rate, charged_bytes, tco_curves
from basicvsr_archival.archival.study_config import load_study
from basicvsr_archival.archival.throughput import ThroughputEntry, ThroughputProfile, save_profile
from basicvsr_archival.utils.cli import run_cli
from basicvsr_archival.utils.ffmpeg import frames_to_video

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "archival" / "study_tiny_ci.py")
TOOL = REPO / "tools" / "archival_study.py"


def _tool():
    """``tools/archival_study.py`` as a module (its ``main`` runs in-process)."""
    spec = importlib.util.spec_from_file_location("tool_archival_study", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _point(variant: str, nbytes: float, restore: float = 0.0, finetune: float = 0.0, model: float = 0.0):
    """A measured ladder point as the study stores it (quality left out)."""
    detail = {"lr": nbytes - model, "model": model, "manifest": 0}
    seconds = {"encode": 0.0, "finetune": finetune, "restore": restore}
    return {"variant": variant, "point": f"{variant}_p", "crf": 23, "scale": 1 if variant == "full" else 2,
            "bytes_detail": detail, "seconds": seconds, "device": "cpu"}  # fmt: skip


# ------------------------------------------------------------------------------------------ unit tests
def test_tco_curves_hand_computed() -> None:
    # one tier at 0.01 $/GB-month, free retrieval; compute 1 $/h; 360-day horizon = 12 months.
    # original 100 GB: 100 * 0.01 * 12 = 12 $. SR: 20 GB -> 2.4 $ + 360 s restore = 0.1 $ per retrieval,
    # plus 7200 s fine-tuning = 2 $ shared by a cluster of 4 = 0.5 $.
    # break-even: 12 = 2.4 + 0.5 + 0.1 R -> R = 91 retrievals -> every 360 / 91 = 3.956 days.
    tier = {"name": "S", "storage_usd_per_gb_month": 0.01, "retrieval_usd_per_gb": 0.0}
    opts = {
        "cost.tiers": [tier],
        "cost.gpu_usd_per_hour": 1.0,
        "tco.cpu_usd_per_hour": None,
        "tco.horizon_days": 360.0,
        "tco.cluster_size": 4,
        "tco.interval_days": (1.0, 360.0, 3),
    }
    study = load_study(TINY, opts)
    orig = dict(_point("full", 100e9), bytes=100e9)
    sr = _point("sr_finetuned", 20e9, restore=360.0, finetune=7200.0, model=1e9)
    sr["bytes"] = charged_bytes(sr, 1)
    out = tco_curves(orig, [(sr, True)], study)
    assert out["intervals_days"] == pytest.approx([1.0, math.sqrt(360.0), 360.0])
    assert out["original"]["usd"] == pytest.approx([12.0] * 3) and out["original"][
        "never_usd"
    ] == pytest.approx(12)
    opt = out["options"][0]
    assert opt["usd"] == pytest.approx([2.9 + 36.0, 2.9 + 0.1 * 360 / math.sqrt(360), 2.9 + 0.1])
    assert opt["never_usd"] == pytest.approx(2.9)
    assert opt["break_even"]["regime"] == "rarer_than"
    assert opt["break_even"]["interval_days"] == pytest.approx(360 / 91)
    assert opt["saving_pct_never"] == pytest.approx(100 * (12 - 2.9) / 12)
    # the model (1 GB) must be shared by 1 / (100 - 19) videos: already pays in storage
    assert opt["model_shared_by_needed"] == pytest.approx(1 / 81)


def test_tco_prices_cpu_and_gpu_points_and_shares_the_model() -> None:
    study = load_study(TINY, {"tco.cpu_usd_per_hour": 0.1, "cost.gpu_usd_per_hour": 2.0})
    orig = dict(_point("full", 1e9), bytes=1e9)
    cpu = dict(_point("sr_base", 3e8, restore=3600.0), bytes=3e8)
    gpu = dict(cpu, device="cuda:0", variant="sr_finetuned")
    out = tco_curves(orig, [(cpu, True), (gpu, False)], study)
    assert [o["compute_usd_per_hour"] for o in out["options"]] == [0.1, 2.0]
    assert out["options"][1]["quality_matched"] is False
    # bytes charged: the model divided by the videos sharing it, LR and manifest in full
    p = {"bytes_detail": {"lr": 1000, "model": 800, "manifest": 100}}
    assert charged_bytes(p) == 1900 and charged_bytes(p, 4) == 1300


# ------------------------------------------------------------------------------------------ end to end
def _clip(frames_dir: Path, first: int, count: int, out: Path) -> Path:
    """Frames ``first ..`` cropped to 132x74, encoded losslessly (x264 QP 0, yuv420p): a source video."""
    folder = out.with_suffix("")
    folder.mkdir(parents=True)
    for i, f in enumerate(sorted(frames_dir.glob("*.png"))[first : first + count]):
        os.symlink(f.resolve(), folder / f"{i:08d}.png")
    return frames_to_video(folder, out, 25, codec="libx264", crf=0, pix_fmt="yuv420p", preset="ultrafast",
                           extra_args=["-vf", "crop=132:74:94:53"])  # fmt: skip


def _finite_json(path: Path) -> dict:
    """Parse JSON, refusing NaN / Infinity tokens."""

    def bad(token: str) -> None:
        raise AssertionError(f"{path}: non-finite number {token}")

    return json.loads(path.read_text(), parse_constant=bad)


def _table(md: str, heading: str) -> dict[str, list[str]]:
    """Rows of the markdown table under ``heading``, keyed by their point id (second column)."""
    section = md.split(heading, 1)[1].split("\n### ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {cells[1].strip(): [c.strip() for c in cells] for cells in rows[2:]}


def _run(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run the study CLI in a subprocess; returns the process and its wall time."""
    env = dict(
        os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1"
    )  # 2 shared cores: no oversubscription
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, env=env, cwd=cwd
    )
    return proc, time.perf_counter() - t0


def test_study_cli_end_to_end_and_resume(reds_demo_dir: Path, tmp_path: Path, capsys) -> None:
    a = _clip(reds_demo_dir, 0, 6, tmp_path / "clipA.mkv")
    b = _clip(reds_demo_dir, 11, 6, tmp_path / "clipB.mkv")  # other frames: the base is trained on them
    work = tmp_path / "study"
    args = [TINY, str(a), "-o", str(work), "--no-progress", "--cfg-options", f"study.base_pretrain.video={b}",
            "study.base_pretrain.finetune.max_iters=1"]  # fmt: skip
    proc, first_s = _run(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "cropped 132x74 -> 132x72" in proc.stderr
    assert "8 points, 0 finished (skipped), 8 to compute" in proc.stderr

    # 1. every output exists; JSON numbers are finite and sane
    for name in ("report.md", "results.json", "rd_clipA.png", "tco_clipA.png"):
        assert (work / name).is_file(), name
    for png in ("rd_clipA.png", "tco_clipA.png"):
        assert (work / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (work / png).stat().st_size > 20_000
    res = _finite_json(work / "results.json")
    (video,) = res["videos"]
    assert video["crop"]["to"] == [132, 72] and video["frames"] == 6
    pts = {p["point"]: p for p in video["points"]}
    assert sorted(pts) == sorted(f"{v}_x{1 if v == 'full' else 2}_crf{c}" for c in (23, 33)
                                 for v in ("full", "bicubic", "sr_base", "sr_finetuned"))  # fmt: skip
    for p in pts.values():
        assert p["bytes"] > 0 and p["frames"] == 6, p
        assert 10 < p["psnr"] < 60 and 0 < p["ssim"] <= 1 and 0 <= p["vmaf"] <= 100, p
        assert all(s >= 0 for s in p["seconds"].values())
    assert (
        pts["sr_finetuned_x2_crf23"]["seconds"]["finetune"] > 0
        and pts["sr_base_x2_crf23"]["seconds"]["restore"] > 0
    )
    assert pts["sr_finetuned_x2_crf23"]["finetune"]["iters"] == 2

    # 2. byte accounting: the fine-tuned option is its whole archive, the others share its LR stream
    manifest = container.verify_archive(pts["sr_finetuned_x2_crf23"]["archive"]).manifest
    assert pts["sr_finetuned_x2_crf23"]["bytes"] == manifest["bytes"]["total"]
    lr = pts["bicubic_x2_crf23"]["bytes"]
    assert lr == manifest["members"]["lr.mp4"]["bytes"] == pts["sr_base_x2_crf23"]["bytes_detail"]["lr"]
    assert pts["sr_base_x2_crf23"]["bytes"] == lr + manifest["bytes"]["manifest"]
    assert pts["full_x1_crf23"]["bytes"] == Path(pts["full_x1_crf23"]["file"]).stat().st_size

    # 3. report tables show the JSON's numbers
    md = (work / "report.md").read_text()
    summary, ladder = _table(md, "### Summary"), _table(md, "### Rate-distortion ladder")
    assert sorted(ladder) == sorted(pts)
    assert sorted(summary) == sorted(
        ["full_x1_crf23", "bicubic_x2_crf23", "sr_base_x2_crf23", "sr_finetuned_x2_crf23"]
    )
    for pid, cells in ladder.items():
        assert int(cells[2]) == round(pts[pid]["bytes"]) and float(cells[6]) == pytest.approx(
            pts[pid]["psnr"], abs=5e-4
        )
    for pid, cells in summary.items():
        assert int(cells[2]) == round(pts[pid]["bytes"]) and float(cells[5]) == pytest.approx(
            pts[pid]["vmaf"], abs=5e-3
        )

    # 4. BD-rates: finite or flagged, and equal to a recomputation from the JSON points
    full = [pts[f"full_x1_crf{c}"] for c in (23, 33)]
    for row in video["bd_rate"]:
        curve = [pts[f"{row['variant']}_x2_crf{c}"] for c in (23, 33)]
        for metric in ("psnr", "vmaf"):
            r = row[metric]
            assert r["flag"] in ("linear_fit", "no_overlap") and (r["percent"] is None) == (
                r["flag"] == "no_overlap"
            )
            again = bd_rate([p["bytes"] for p in full], [p[metric] for p in full],
                            [p["bytes"] for p in curve], [p[metric] for p in curve])  # fmt: skip
            assert r["percent"] == (None if math.isnan(again.percent) else pytest.approx(again.percent))

    # 5. TCO: break-even and curves recomputed with the cost model from the JSON's own numbers
    tco, st = video["tco"], res["settings"]
    assert tco["original"]["point"] == "full_x1_crf23" and len(tco["options"]) == 3
    base_model = CostModel.from_config(st["cost"])
    for opt in tco["options"]:
        model = dataclasses.replace(base_model, gpu_usd_per_hour=opt["compute_usd_per_hour"])
        assert opt["compute_usd_per_hour"] == st["tco"]["cpu_usd_per_hour"]  # restored on the CPU

        def scn(i: float, opt=opt) -> ArchiveScenario:
            t = st["tco"]
            return ArchiveScenario(tco["original"]["bytes"], opt["bytes"], opt["restore_seconds"], i,
                                   t["horizon_days"], opt["finetune_seconds"], t["cluster_size"])  # fmt: skip

        be = model.compare(scn(30.0)).break_even()
        assert opt["break_even"]["regime"] == be.regime
        want = be.interval_days if be.interval_days is None or math.isfinite(be.interval_days) else None
        assert opt["break_even"]["interval_days"] == (None if want is None else pytest.approx(want))
        for i, usd in zip(tco["intervals_days"][::10], opt["usd"][::10]):
            assert usd == pytest.approx(model.compare(scn(i)).sr.total_usd)
        assert summary[opt["point"]][-1] in md  # break-even phrase is in the table

    # 6. re-run: nothing is recomputed (point files untouched), the report is rebuilt
    point_files = sorted((work / "videos" / "clipA" / "points").glob("*.json"))
    mtimes = [f.stat().st_mtime_ns for f in point_files]
    proc2, second_s = _run(args, tmp_path)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert "8 points, 8 finished (skipped), 0 to compute" in proc2.stderr
    assert [f.stat().st_mtime_ns for f in point_files] == mtimes
    assert _finite_json(work / "results.json")["videos"][0]["points"] == video["points"]
    with capsys.disabled():
        print(f"\nstudy CLI: first run {first_s:.1f} s, re-run {second_s:.1f} s\n{proc.stdout}")

    # 7. re-pricing without measuring (in-process): cluster of 1000 shares the model and the fine-tuning
    assert run_cli(_tool().main, [*args, "tco.cluster_size=1000", "--report-only"]) == 0
    priced = _finite_json(work / "results.json")["videos"][0]
    p = {q["point"]: q for q in priced["points"]}["sr_finetuned_x2_crf23"]
    assert p["bytes"] == pytest.approx(charged_bytes(pts["sr_finetuned_x2_crf23"], 1000))
    assert [f.stat().st_mtime_ns for f in point_files] == mtimes

    # 7b. re-pricing with a throughput profile: SR restore seconds = frames * LR pixels / profiled rate
    entry = ThroughputEntry("c8n1", 8, 1, 2, "cpu", "x", "fp32", 66, 36, 10, 0.5)  # 47,520 px/s
    profile = save_profile(ThroughputProfile((entry,), {}), tmp_path / "profile.json")
    assert run_cli(_tool().main, [*args, f"tco.throughput_profile={profile}", "--report-only"]) == 0
    priced = _finite_json(work / "results.json")["videos"][0]
    for opt in priced["tco"]["options"]:
        want = (
            6 * 66 * 36 / 47_520 if opt["variant"] != "bicubic" else pts[opt["point"]]["seconds"]["restore"]
        )
        assert opt["restore_seconds"] == pytest.approx(want)

    # 8. other measurement settings in the same work dir are refused with one line
    assert run_cli(_tool().main, [*args, "finetune.lr=0.01"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"error: {re.escape(str(work))}: holds a study made with other measurement settings.*", err
    )


def test_study_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    main = _tool().main
    assert run_cli(main, [TINY, str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "w")]) == 1
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.mp4'}: video not found"
    assert run_cli(main, [TINY, str(tmp_path / "x.mp4"), "-o", "w", "--cfg-options", "study.scales=[3]"]) == 1
    assert "study.scales must be a non-empty list of 2 and/or 4" in capsys.readouterr().err
    assert run_cli(main, [TINY, "x.mp4", "-o", "w", "--cfg-options", "tco.original_crf=30"]) == 1
    assert "tco.original_crf 30 is not one of study.crfs" in capsys.readouterr().err
