"""The archive job end to end on real footage (REDS demo frames), its resumability and its CLI errors.

The comparison that matters: a tiny BasicVSR++ pre-trained briefly on *other* frames of the footage
(the base) against the same network after the archive job fine-tuned it on the archived clip, both
restored through the same archive/restore code from the same H.264 LR stream. The base has already
learnt to match bilinear interpolation; beating it by a margin needs a residual learnt from this
clip's (decoded LR, original) pairs, stored as an int8 delta and rebuilt from base + delta.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from basicvsr_archival.archival import container, package
from basicvsr_archival.archival.evaluate import evaluate_archive
from basicvsr_archival.archival.job_state import JobState
from basicvsr_archival.archival.pipeline import run_archive_job
from basicvsr_archival.utils.cli import run_cli
from basicvsr_archival.utils.ffmpeg import frames_to_video, probe_video

REPO = Path(__file__).resolve().parents[2]
TINY_CI = str(REPO / "configs" / "archival" / "tiny_ci.py")


def _clip(frames_dir: Path, first: int, count: int, out: Path) -> Path:
    """Encode frames ``first .. first + count - 1`` losslessly (x264 QP 0, yuv420p): the archival master."""
    folder = out.with_suffix("")
    folder.mkdir(parents=True)
    for i, f in enumerate(sorted(frames_dir.glob("*.png"))[first : first + count]):
        os.symlink(f.resolve(), folder / f"{i:08d}.png")
    return frames_to_video(folder, out, 25, codec="libx264", crf=0, pix_fmt="yuv420p", preset="ultrafast")


def _tool(name: str):
    """Import ``tools/<name>.py`` as a module (its ``main`` runs in-process)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clips(reds_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(A, B): 8 frames to archive, and 10 later frames of the same footage to pre-train the base on."""
    tmp = tmp_path_factory.mktemp("clips")
    return _clip(reds_demo_dir, 0, 8, tmp / "A.mkv"), _clip(reds_demo_dir, 11, 10, tmp / "B.mkv")


def test_archive_restore_evaluate_end_to_end(clips, tmp_path, capsys):
    a, b = clips
    t0 = time.perf_counter()
    # 1. base: the tiny model trained from scratch for 20 iterations on clip B (same pipeline)
    opts = {"finetune.max_iters": 20, "storage.compression": "none"}
    job = run_archive_job(TINY_CI, b, tmp_path / "B.archive", cfg_options=opts, progress=False)
    assert job.manifest["finetune"]["iters"] == 20 and job.manifest["model"]["storage"]["mode"] == "full"
    base = tmp_path / "chkpts" / "tiny_base.pth"
    base.parent.mkdir()
    shutil.copy(job.work_dir / "finetune" / "finetuned.pth", base)

    # 2. archive clip A with the CLI, fine-tuning from the base
    archive = tmp_path / "A.archive"
    argv = [TINY_CI, str(a), "-o", str(archive), "--work-dir", str(tmp_path / "A.work"), "--no-progress"]
    argv += ["--cfg-options", f"base_checkpoint={base}", "finetune.max_iters=40"]
    assert run_cli(_tool("archive").main, argv) == 0
    manifest = container.verify_archive(archive).manifest
    model = manifest["model"]
    assert model["storage"]["mode"] == "delta" and model["storage"]["dtype"] == "int8"
    assert model["base_checkpoint"]["sha256"] == package.sha256_file(base)
    assert manifest["finetune"]["iters"] == 40 and manifest["finetune"]["init"]["from"] == "base"
    total = manifest["bytes"]["total"]
    on_disk = sum(p.stat().st_size for p in archive.iterdir())
    assert total == on_disk < a.stat().st_size  # LR + model + manifest, smaller than the source

    # 3. evaluate: restores with the fine-tuned model and with the base alone, plus the baselines
    report = evaluate_archive(
        archive, a, tmp_path / "report.json", work_dir=tmp_path / "eval", base_checkpoint=base,
        crf_trials=3, progress=False,
    )  # fmt: skip
    by = {v["name"]: v for v in report["variants"]}
    assert set(by) == {"sr_archive", "bicubic", "sr_base", "full_res"}
    assert by["sr_archive"]["psnr"] > by["sr_base"]["psnr"] + 0.2, report["markdown"]
    assert by["sr_archive"]["ssim"] > by["sr_base"]["ssim"]
    for v in by.values():
        assert v["frames"] == 8 and 0 <= v["vmaf"] <= 100
    src, restored = probe_video(a), probe_video(tmp_path / "eval" / "sr_archive.mkv")
    assert (restored.num_frames, restored.width, restored.height) == (src.num_frames, src.width, src.height)
    assert restored.fps == src.fps
    assert json.loads((tmp_path / "report.json").read_text())["gains_db"] == report["gains_db"]
    with capsys.disabled():
        print(f"\n{report['markdown']}\ngains {report['gains_db']}; e2e {time.perf_counter() - t0:.1f} s")


def test_interrupted_packaging_resumes(clips, tmp_path, monkeypatch, capsys):
    a, _ = clips
    out, work = tmp_path / "A.tar", tmp_path / "work"
    opts = {"finetune.max_iters": 1}

    def crash(tmp: Path, final: Path) -> None:
        raise RuntimeError("killed while packaging")

    monkeypatch.setattr(container, "_publish", crash)
    argv = [TINY_CI, str(a), "-o", str(out), "--work-dir", str(work), "--no-progress"]
    assert run_cli(_tool("archive").main, [*argv, "--cfg-options", "finetune.max_iters=1"]) == 1
    hint = f"pass --resume to continue, or delete {work} to start over"
    err = capsys.readouterr().err.strip()  # the failed run says how to go on, in its one line
    assert err.startswith("error: unexpected RuntimeError: killed while packaging; ") and hint in err, err
    assert "\n" not in err
    assert not out.exists() and not list(tmp_path.glob("A.tar*"))  # nothing that looks like an archive
    assert set(JobState(work).data["stages"]) == {"probe", "encode_lr", "decode_lr", "finetune", "audio"}
    assert not (work / ".lock").exists()  # locks released (and removed) when the run ended
    with pytest.raises(package.ArchiveError) as refused:
        run_archive_job(TINY_CI, a, out, work, cfg_options=opts, progress=False)
    assert str(refused.value) == f"{work}: holds an earlier archive run; {hint}"

    monkeypatch.undo()
    moved = tmp_path / "moved.work"  # a work dir moved elsewhere resumes where it stopped
    work.rename(moved)
    work = moved
    job = run_archive_job(TINY_CI, a, out, work, resume=True, cfg_options=opts, progress=False)
    assert job.stages_run == ["package"]  # probe, encode, decode and fine-tuning were not redone
    assert container.verify_archive(out).manifest["finetune"]["iters"] == 1
    again = run_archive_job(TINY_CI, a, out, work, resume=True, cfg_options=opts, progress=False)
    assert again.stages_run == []
    with pytest.raises(package.ArchiveError, match="different settings"):
        run_archive_job(TINY_CI, a, out, work, resume=True, cfg_options={"codec.crf": 30}, progress=False)


def test_archive_cli_subprocess_error_is_one_line(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(REPO / "tools" / "archive.py"), TINY_CI, "missing.mp4", "-o", "x"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: missing.mp4: source video not found"
    assert not (tmp_path / "x").exists()


def test_archive_cli_error_messages(clips, tmp_path, capsys):
    a, _ = clips
    tool = _tool("archive")
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"x")
    for argv, message in [
        ([TINY_CI, str(a), "-o", str(a)], "refusing to write the archive over the input"),
        (
            [TINY_CI, str(a), "-o", str(tmp_path / "x"), "--cfg-options", "codec.scale=3"],
            "scale must be one of",
        ),
        (
            [TINY_CI, str(a), "-o", str(tmp_path / "x"), "--cfg-options", "storage.mode=delta"],
            "needs a base_checkpoint",
        ),
        (["nope.py", str(a), "-o", str(tmp_path / "x")], "nope.py: config file not found"),
        (
            [TINY_CI, str(a), "-o", str(blocker / "out.tar"), "--work-dir", str(tmp_path / "w")],
            f"{blocker / 'out.tar'}: {blocker} is a file, not a folder",
        ),
        (
            [TINY_CI, str(a), "-o", str(tmp_path / "x"), "--cfg-options", "finetune.lr=abc"],
            "tiny_ci: finetune.lr must be a number > 0, got 'abc'",
        ),
    ]:
        assert run_cli(tool.main, argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err, err
    assert blocker.read_bytes() == b"x" and not (tmp_path / "w").exists()


def test_second_run_of_a_job_is_locked_out(clips, tmp_path, capsys):
    a, _ = clips
    out, work = tmp_path / "A.archive", tmp_path / "A.work"
    cmd = [
        sys.executable,
        str(REPO / "tools" / "archive.py"),
        TINY_CI,
        str(a),
        "-o",
        str(out),
        "--no-progress",
    ]
    long_run = ["--cfg-options", "finetune.max_iters=100000", "finetune.max_seconds=600"]
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO))
    first = subprocess.Popen([*cmd, "--work-dir", str(work), *long_run], env=env, cwd=tmp_path)
    try:
        locks = (work / ".lock", tmp_path / "A.archive.lock")
        deadline = time.monotonic() + 180
        while not all(p.is_file() and p.read_text().strip() == str(first.pid) for p in locks):
            assert first.poll() is None and time.monotonic() < deadline, "first run never held its locks"
            time.sleep(0.2)

        # the same job again (--resume, same work dir): refused at start, in one line naming the holder
        t0 = time.monotonic()
        second = subprocess.run(
            [*cmd, "--work-dir", str(work), "--resume", *long_run],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert second.returncode == 1 and time.monotonic() - t0 < 60
        assert second.stderr.strip() == (
            f"error: {out}: in use by another process (pid {first.pid} holds {locks[1]}); "
            "wait for it to finish or stop it"
        )
        # another work dir, same archive: refused before any work (nothing made in the other work dir)
        other = tmp_path / "other.work"
        t0 = time.monotonic()
        argv = [TINY_CI, str(a), "-o", str(out), "--work-dir", str(other), "--no-progress"]
        assert run_cli(_tool("archive").main, argv) == 1
        assert time.monotonic() - t0 < 10
        err = capsys.readouterr().err.strip()
        assert err == second.stderr.strip() and not other.exists()
        # the work dir of the running job, another archive: refused as well
        argv = [TINY_CI, str(a), "-o", str(tmp_path / "B.archive"), "--work-dir", str(work), "--resume"]
        assert run_cli(_tool("archive").main, argv) == 1
        err = capsys.readouterr().err.strip()
        assert err == f"error: {work}: in use by another process (pid {first.pid} holds {locks[0]}); " + (
            "wait for it to finish or stop it"
        )
        assert not (tmp_path / "B.archive.lock").exists() and first.poll() is None
    finally:
        first.kill()
        first.wait(60)
