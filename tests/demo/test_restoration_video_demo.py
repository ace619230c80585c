"""Tests of the demo script run as a subprocess (tiny model, 6 real frames cropped to 64x96)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
from mmengine.config import Config

from basicvsr_archival.apis import init_model
from basicvsr_archival.utils.ffmpeg import probe_video

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / "demo" / "restoration_video_demo.py"
TINY_CONFIG = REPO_ROOT / "configs" / "tiny_basicvsrpp_c8n1.py"
NUM_FRAMES, H, W = 6, 64, 96


def _umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def run_demo(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """Run the demo script with ``args`` in ``cwd`` and return the finished process (text output)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, str(DEMO), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """The demo failed with exit code 1 or 2 and a single stderr line holding every fragment."""
    assert proc.returncode in (1, 2), proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def small_frames(reds_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 6 real REDS frames, centre-cropped to 64x96, in a temporary folder (names kept)."""
    folder = tmp_path_factory.mktemp("demo_in") / "frames"
    folder.mkdir()
    for src in sorted(reds_demo_dir.glob("*.png"))[:NUM_FRAMES]:
        img = cv2.imread(str(src))
        top, left = (img.shape[0] - H) // 2, (img.shape[1] - W) // 2
        cv2.imwrite(str(folder / src.name), img[top : top + H, left : left + W])
    return folder


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight checkpoint of the tiny config in the official layout."""
    torch.manual_seed(0)
    model = init_model(TINY_CONFIG, device="cpu")
    path = tmp_path_factory.mktemp("ckpt") / "tiny_c8n1.pth"
    torch.save({"meta": {}, "state_dict": model.state_dict()}, path)
    return path


def test_demo_writes_pngs_named_like_the_inputs(small_frames: Path, tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "results" / "frames"
    proc = run_demo(TINY_CONFIG, tiny_checkpoint, small_frames, out, "--max-seq-len", 4, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {NUM_FRAMES} frames of {4 * W}x{4 * H}" in proc.stdout
    names = sorted(p.name for p in small_frames.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names
    for name in names:
        assert cv2.imread(str(out / name)).shape == (4 * H, 4 * W, 3)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_umask()  # not mkdtemp's 0o700
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = run_demo(TINY_CONFIG, tiny_checkpoint, small_frames, out, cwd=tmp_path)  # same-named frames
    assert_one_line_error(proc, str(out / names[0]), "already exists (pass --overwrite to replace it)")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_demo_writes_mp4_with_all_frames(small_frames: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "restored.mp4"
    out.write_bytes(b"an earlier result")
    proc = run_demo(TINY_CONFIG, tiny_checkpoint, small_frames, out, "--device", "cpu", cwd=tmp_path)
    assert_one_line_error(proc, str(out), "already exists (pass --overwrite to replace it)")
    assert out.read_bytes() == b"an earlier result"
    proc = run_demo(
        TINY_CONFIG, tiny_checkpoint, small_frames, out, "--device", "cpu", "--overwrite", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    info = probe_video(out)
    assert (info.num_frames, info.width, info.height) == (NUM_FRAMES, 4 * W, 4 * H)
    assert info.fps == 25


def test_demo_missing_input(tiny_checkpoint: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_frames"
    proc = run_demo(TINY_CONFIG, tiny_checkpoint, missing, tmp_path / "out", cwd=tmp_path)
    assert_one_line_error(proc, str(missing), "no such file or folder")
    assert not (tmp_path / "out").exists()


def test_demo_refuses_output_equal_to_input(small_frames: Path, tmp_path: Path) -> None:
    copy = tmp_path / "frames"
    shutil.copytree(small_frames, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    proc = run_demo(TINY_CONFIG, "none", copy, copy, cwd=tmp_path)
    assert_one_line_error(proc, str(copy), "refusing to overwrite the input")
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


def test_demo_checkpoint_that_does_not_fit(small_frames: Path, tmp_path: Path) -> None:
    cfg = Config.fromfile(str(TINY_CONFIG))
    cfg.model.generator.mid_channels = 16
    ckpt = tmp_path / "c16.pth"
    torch.save({"meta": {}, "state_dict": init_model(cfg, device="cpu").state_dict()}, ckpt)
    proc = run_demo(TINY_CONFIG, ckpt, small_frames, tmp_path / "out", cwd=tmp_path)
    assert_one_line_error(proc, str(ckpt), "does not fit", "shape mismatches")
    assert not (tmp_path / "out").exists()


def test_demo_unknown_device(small_frames: Path, tmp_path: Path) -> None:
    proc = run_demo(TINY_CONFIG, "none", small_frames, tmp_path / "out", "--device", "tpu", cwd=tmp_path)
    assert_one_line_error(proc, "unknown device 'tpu'")


def test_demo_bad_arguments(tmp_path: Path) -> None:
    proc = run_demo(TINY_CONFIG, "none", tmp_path / "out", cwd=tmp_path)  # no IN and no --synthetic
    assert proc.returncode == 2
    assert "IN" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_demo(TINY_CONFIG, "none", "in", "out", "--window-size", "4", cwd=tmp_path)
    assert proc.returncode == 2 and "odd" in proc.stderr


def test_demo_checks_the_output_before_loading_the_model(tmp_path: Path) -> None:
    a_file = tmp_path / "passwd"
    a_file.write_text("x")
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "00000005.png").write_bytes(b"keep")  # a frame the 12 synthetic frames would replace
    (tmp_path / "old.mp4").write_bytes(b"keep")
    cases = {
        "old.mp4": "already exists (pass --overwrite to replace it)",
        "frames": "00000005.png: already exists (pass --overwrite",
        "out.xyz": "unknown output extension '.xyz'",
        "passwd/out.mp4": f"{a_file} is a file, not a folder",
    }
    for out, says in cases.items():
        proc = run_demo(TINY_CONFIG, "none", "--synthetic", tmp_path / out, cwd=tmp_path)
        # one line, and no "CHECKPOINT is 'none'" warning: the refusal came before the model was built
        assert_one_line_error(proc, str(tmp_path / out), says)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "old.mp4", "passwd"]
    assert (tmp_path / "old.mp4").read_bytes() == b"keep" and [p.name for p in frames.iterdir()] == [
        "00000005.png"
    ]


def test_demo_checkpoint_of_random_bytes(tmp_path: Path) -> None:
    noise = tmp_path / "noise.pth"
    noise.write_bytes(os.urandom(4096))
    proc = run_demo(TINY_CONFIG, noise, "--synthetic", tmp_path / "out.mp4", cwd=tmp_path)
    assert_one_line_error(
        proc, f"{noise}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)"
    )
    assert "likely succeed" not in proc.stderr and not (tmp_path / "out.mp4").exists()
