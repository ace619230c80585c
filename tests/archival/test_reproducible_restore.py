"""Reproducible restores (issue 11): same bytes for any thread count, the manifest pins the kernels."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from basicvsr_archival.archival.pipeline import run_archive_job
from basicvsr_archival.archival.restore import (
    BACKEND_ENV,
    decoded_frames,
    restore_archive,
    restore_backend,
    warn_if_backend_differs,
)
from basicvsr_archival.utils.ffmpeg import frames_to_video

REPO = Path(__file__).resolve().parents[2]
TINY_CI = REPO / "configs" / "archival" / "tiny_ci.py"


@pytest.fixture(scope="module")
def scratch_archive(reds_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny_ci archive trained from scratch (2 iterations) of 6 real frames cropped to 192x128 (LR 96x64).

    192x128 is about the smallest size where PyTorch's bilinear x2 skip is split across 2 threads
    (its 73,728 outputs exceed the 32,768-element grain): before the fix 2 of the 6 frames differed.
    """
    tmp = tmp_path_factory.mktemp("reproducible")
    frames = tmp / "frames"
    frames.mkdir()
    for i, f in enumerate(sorted(reds_demo_dir.glob("*.png"))[:6]):
        os.symlink(f.resolve(), frames / f"{i:08d}.png")
    src = frames_to_video(
        frames, tmp / "src.mkv", 25, codec="libx264", crf=0, preset="ultrafast",
        extra_args=["-vf", "crop=192:128:0:0"],
    )  # fmt: skip
    out = tmp / "clip.archive"
    run_archive_job(TINY_CI, src, out, tmp / "work", cfg_options={"finetune.max_iters": 2}, progress=False)
    return out


def _restore_in_subprocess(archive: Path, out: Path, threads: int) -> bytes:
    """``tools/restore.py ARCHIVE -o OUT`` in a fresh interpreter with ``OMP_NUM_THREADS=threads``."""
    env = {k: v for k, v in os.environ.items() if k not in BACKEND_ENV.values()}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(REPO / "tools" / "restore.py"), str(archive), "-o", str(out), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def test_restore_gives_the_same_bytes_for_1_and_2_threads(scratch_archive, tmp_path):
    one = _restore_in_subprocess(scratch_archive, tmp_path / "t1.mkv", 1)
    two = _restore_in_subprocess(scratch_archive, tmp_path / "t2.mkv", 2)
    frames1 = [hashlib.sha256(f.tobytes()).hexdigest() for f in decoded_frames(tmp_path / "t1.mkv")]
    frames2 = [hashlib.sha256(f.tobytes()).hexdigest() for f in decoded_frames(tmp_path / "t2.mkv")]
    assert len(frames1) == len(frames2) == 6
    assert sum(a != b for a, b in zip(frames1, frames2)) == 0  # frames differing by thread count
    assert one == two and len(one) > 10_000  # the whole file, byte for byte


def test_manifest_records_the_backend_and_restore_follows_it(scratch_archive, tmp_path, monkeypatch):
    from basicvsr_archival.archival.package import verify_archive

    rec = verify_archive(scratch_archive).manifest["restore_backend"]
    assert rec == restore_backend()  # recorded at archive time, as this process sees it
    assert rec["threads"] == "any" and rec["conv_impl"] == "auto" and rec["winograd_tile"] in (4, 6)
    default = restore_archive(scratch_archive, tmp_path / "default.mkv", progress=False)
    # another conv implementation in the environment changes the bits of a plain inference ...
    monkeypatch.setenv("BASICVSR_CONV_IMPL", "native")
    monkeypatch.setenv("BASICVSR_WINOGRAD_TILE", "4")
    pinned = restore_archive(scratch_archive, tmp_path / "pinned.mkv", progress=False)
    # ... but a restore follows the archive's recorded variant, and puts the environment back
    assert pinned.output.read_bytes() == default.output.read_bytes()
    assert os.environ["BASICVSR_CONV_IMPL"] == "native" and os.environ["BASICVSR_WINOGRAD_TILE"] == "4"


def test_a_restore_that_cannot_match_the_record_warns_in_one_line(caplog):
    cpu = torch.device("cpu")
    here = restore_backend()
    assert warn_if_backend_differs({"restore_backend": here}, cpu, "a.archive") is True
    assert warn_if_backend_differs({}, cpu, "old.archive") is True  # archives from before the record
    other = {"restore_backend": {**here, "torch": "1.0.0", "cpu_capability": "NO AVX"}}
    with caplog.at_level(logging.WARNING):
        assert warn_if_backend_differs(other, cpu, "a.archive") is False
        assert warn_if_backend_differs(other, torch.device("cuda"), "a.archive") is True  # CPU only
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("a.archive: restoring with torch ") and "(archive: 1.0.0)" in lines[0]
