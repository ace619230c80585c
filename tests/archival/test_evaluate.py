"""Archive evaluation: PSNR / SSIM / VMAF of the restoration and of the baselines, CRF search, reports."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from basicvsr_archival.archival.codec import CodecSettings
from basicvsr_archival.archival.evaluate import (
    EvaluationError,
    _filter_escape,
    closest_crf_encode,
    evaluate_archive,
    frame_metrics,
    markdown_table,
    vmaf_score,
)
from basicvsr_archival.archival.finetune import initial_state
from basicvsr_archival.archival.pipeline import load_archival_config, run_archive_job
from basicvsr_archival.evaluation.metrics import psnr
from basicvsr_archival.utils.cli import run_cli
from basicvsr_archival.utils.ffmpeg import frames_to_video, iter_video_frames

REPO = Path(__file__).resolve().parents[2]
TINY_CI = REPO / "configs" / "archival" / "tiny_ci.py"


@pytest.fixture(scope="module")
def archive(reds_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny delta archive of 5 real frames (128x96) with its base checkpoint and source."""
    tmp = tmp_path_factory.mktemp("evaluate")
    frames = tmp / "frames"
    frames.mkdir()
    for i, f in enumerate(sorted(reds_demo_dir.glob("*.png"))[:5]):
        os.symlink(f.resolve(), frames / f"{i:08d}.png")
    src = frames_to_video(
        frames,
        tmp / "src.mp4",
        25,
        codec="libx264",
        crf=4,
        preset="ultrafast",
        extra_args=["-vf", "crop=128:96:64:40"],
    )
    state, _ = initial_state(load_archival_config(TINY_CI).model, None, False, seed=1)
    base = tmp / "tiny_base.pth"
    torch.save({"state_dict": state}, base)
    opts = {"base_checkpoint": str(base), "finetune.max_iters": 2}
    run_archive_job(TINY_CI, src, tmp / "clip.archive", cfg_options=opts, progress=False)
    return {"archive": tmp / "clip.archive", "src": src, "base": base}


def test_evaluate_archive_report(archive, tmp_path):
    out = tmp_path / "report.json"
    report = evaluate_archive(
        archive["archive"], archive["src"], out, work_dir=tmp_path / "w", base_checkpoint=archive["base"],
        crf_trials=4, progress=False,
    )  # fmt: skip
    by = {v["name"]: v for v in report["variants"]}
    assert list(by) == ["sr_archive", "bicubic", "sr_base", "full_res"]
    assert report["reference_matches_source"] and report["frames"] == 5 and report["size"] == [128, 96]
    total = report["archive_bytes"]["total"]
    assert by["sr_archive"]["bytes"] == total and by["bicubic"]["bytes"] == by["sr_base"]["bytes"]
    assert by["bicubic"]["bytes"] == report["archive_bytes"]["members"]["lr.mp4"]
    for v in by.values():
        assert 10 < v["psnr"] < 60 and 0 < v["ssim"] <= 1 and 0 <= v["vmaf"] <= 100 and v["seconds"] >= 0
        assert len(v["psnr_per_frame"]) == 5
    trials = by["full_res"]["crf_trials"]
    assert len(trials) <= 4 and by["full_res"]["crf"] == min(trials, key=lambda c: abs(trials[c] - total))
    assert by["full_res"]["bytes"] == trials[by["full_res"]["crf"]]
    assert report["gains_db"]["over_bicubic"] == pytest.approx(
        by["sr_archive"]["psnr"] - by["bicubic"]["psnr"], abs=1e-3
    )
    saved = json.loads(out.read_text())
    assert saved["variants"][0]["name"] == "sr_archive"
    md = out.with_suffix(".md").read_text()
    assert "| variant | bytes | PSNR (dB) | SSIM | VMAF | seconds |" in md and "bicubic" in md
    # the PSNR of the kept restoration recomputed independently from the files
    values = [
        psnr(a, b)
        for a, b in zip(
            iter_video_frames(tmp_path / "w" / "sr_archive.mkv"), iter_video_frames(archive["src"])
        )
    ]
    assert by["sr_archive"]["psnr"] == pytest.approx(float(np.mean(values)))


def test_vmaf_and_frame_metrics(archive, tmp_path):
    src = archive["src"]
    assert vmaf_score(src, src, tmp_path) > 97
    m = frame_metrics(iter_video_frames(src), iter_video_frames(src), progress=False)
    assert m["frames"] == 5 and m["psnr"] == float("inf") and m["ssim"] == pytest.approx(1.0)
    with pytest.raises(EvaluationError, match="frame counts differ"):
        frame_metrics(iter_video_frames(src), iter_video_frames(src, start=1), progress=False)
    odd = tmp_path / "we:ird, [dir];'x"  # the log path goes through two levels of filtergraph escaping
    odd.mkdir()
    assert vmaf_score(src, src, odd) > 97 and len(list(odd.glob("vmaf_*.json"))) == 1
    assert _filter_escape("a:b,c") == "a\\\\:b\\,c"


def test_closest_crf_encode(archive, tmp_path):
    settings = CodecSettings(scale=2, codec="libx264", crf=23)
    path, crf, tried = closest_crf_encode(archive["src"], settings, 20_000, tmp_path, max_trials=5)
    assert path.is_file() and path.stat().st_size == tried[crf] and len(tried) == 5
    assert all(abs(tried[crf] - 20_000) <= abs(b - 20_000) for b in tried.values())
    sizes = [tried[c] for c in sorted(tried)]
    assert sizes == sorted(sizes, reverse=True)  # higher CRF, fewer bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # the other trials are removed


def test_markdown_table_handles_missing_values():
    variant = {"label": "x", "bytes": 3, "psnr": float("inf"), "ssim": None, "vmaf": None, "seconds": 0.5}
    report = {"reference": "r.mp4", "frames": 2, "size": [4, 4], "reference_bytes": 10, "variants": [variant]}
    assert "| x | 3 | inf | n/a | n/a | 0.50 |" in markdown_table(report)


def test_evaluate_cli_errors(archive, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("tool_eval", REPO / "tools" / "evaluate_archive.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    other = frames_to_video(  # a reference of another size
        archive["src"].parent / "frames", tmp_path / "other.mp4", 25, crf=30, preset="ultrafast", max_frames=2
    )
    assert run_cli(tool.main, [str(archive["archive"]), "--reference", str(other), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "reference is 320x180" in err and "\n" not in err
