"""Tests of basicvsr_archival.utils.ffmpeg on real REDS frames with the bundled ffmpeg."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from basicvsr_archival.utils.ffmpeg import (
    FFmpegError,
    MediaError,
    VideoInputError,
    VideoWriter,
    as_fraction,
    atomic_output,
    chroma_subsampling,
    count_video_frames,
    ffmpeg_exe,
    frames_to_video,
    iter_video_frames,
    probe_video,
    run_ffmpeg,
)

N_FRAMES = 8


def _load_rgb(path: Path) -> np.ndarray:
    """Read a PNG as RGB uint8."""
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def frames(reds_demo_dir: Path) -> list[np.ndarray]:
    """The first N_FRAMES real REDS frames (320x180 RGB)."""
    return [_load_rgb(p) for p in sorted(reds_demo_dir.glob("*.png"))[:N_FRAMES]]


@pytest.fixture(scope="module")
def lossless_video(reds_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lossless (libx264rgb crf 0) video of the first N_FRAMES frames at 24 fps."""
    out = tmp_path_factory.mktemp("ffmpeg") / "lossless.mkv"
    return frames_to_video(reds_demo_dir, out, 24, max_frames=N_FRAMES, lossless=True)


def _leftovers(folder: Path) -> list[str]:
    """Names of temporary files left in a folder."""
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


def test_ffmpeg_exe_exists_and_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Path(ffmpeg_exe()).is_file()
    monkeypatch.setenv("BASICVSR_FFMPEG", str(tmp_path / "no-such-ffmpeg"))
    assert ffmpeg_exe() == str(tmp_path / "no-such-ffmpeg")
    with pytest.raises(FFmpegError, match="probing things failed: ffmpeg binary not found"):
        run_ffmpeg(["-version"], "probing things")


def test_run_ffmpeg_error_has_what_and_stderr(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(FFmpegError) as info:
        run_ffmpeg(["-i", str(missing), "-f", "null", "-"], f"reading {missing}")
    msg = str(info.value)
    assert msg.startswith(f"reading {missing} failed (ffmpeg exit ")
    assert "No such file" in msg and "\n" not in msg
    assert info.value.stderr and info.value.cmd[0] == ffmpeg_exe()


def test_as_fraction() -> None:
    assert as_fraction("30000/1001") == Fraction(30000, 1001)
    assert as_fraction(30000 / 1001) == Fraction(30000, 1001)
    assert as_fraction(25) == Fraction(25)
    with pytest.raises(ValueError, match="positive"):
        as_fraction(0)


def test_frames_to_video_sequence_probe_fps_fraction(reds_demo_dir: Path, tmp_path: Path) -> None:
    out = frames_to_video(reds_demo_dir, tmp_path / "ntsc.mp4", "30000/1001", max_frames=N_FRAMES)
    info = probe_video(out)
    assert isinstance(info.fps, Fraction) and info.fps == Fraction(30000, 1001)
    assert (info.width, info.height, info.num_frames) == (320, 180, N_FRAMES)
    assert info.pix_fmt == "yuv420p" and info.codec == "h264" and not info.has_audio
    assert info.bytes == out.stat().st_size > 0
    assert info.duration == pytest.approx(N_FRAMES * 1001 / 30000, rel=0.05)
    assert _leftovers(tmp_path) == []


def test_frames_to_video_glob_pattern(reds_demo_dir: Path, tmp_path: Path) -> None:
    # odd-numbered frames only: not a contiguous sequence, so ffmpeg's glob input is used
    out = frames_to_video(
        reds_demo_dir, tmp_path / "odd.mkv", 25, pattern="0000000[13579].png", lossless=True
    )
    assert count_video_frames(out) == 5
    decoded = list(iter_video_frames(out))
    assert np.array_equal(decoded[2], _load_rgb(reds_demo_dir / "00000005.png"))


def test_frames_to_video_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoInputError, match="frame folder not found"):
        frames_to_video(tmp_path / "nope", tmp_path / "o.mp4", 24)
    with pytest.raises(VideoInputError, match="no frames match"):
        frames_to_video(tmp_path, tmp_path / "o.mp4", 24)


def test_lossless_roundtrip_and_start(lossless_video: Path, frames: list[np.ndarray]) -> None:
    info = probe_video(lossless_video)
    assert info.fps == 24 and info.num_frames == N_FRAMES  # mkv: counted from packets
    decoded = list(iter_video_frames(lossless_video))
    assert len(decoded) == N_FRAMES
    assert all(d.dtype == np.uint8 and d.shape == (180, 320, 3) for d in decoded)
    assert all(np.array_equal(d, f) for d, f in zip(decoded, frames))
    tail = list(iter_video_frames(lossless_video, start=5))
    assert len(tail) == N_FRAMES - 5 and np.array_equal(tail[0], frames[5])
    assert count_video_frames(lossless_video, decode=False) == count_video_frames(lossless_video) == N_FRAMES


def test_video_writer_lossy_default(frames: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "w.mp4"
    with VideoWriter(out, Fraction(24000, 1001)) as writer:
        writer.write_many(frames)
    assert "-fps_mode" in writer.command and writer.frames_written == N_FRAMES
    info = probe_video(out)
    assert (info.width, info.height, info.pix_fmt, info.num_frames) == (320, 180, "yuv420p", N_FRAMES)
    assert info.fps == Fraction(24000, 1001)
    psnr = np.mean([cv2.PSNR(d, f) for d, f in zip(iter_video_frames(out), frames)])
    assert psnr > 30.0
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # published with normal permissions
    assert _leftovers(tmp_path) == []


def test_video_writer_lossless_exact(frames: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "exact.mkv"
    with VideoWriter(out, 24, lossless=True, codec="ffv1") as writer:
        writer.write_many(frames[:3])
    assert all(np.array_equal(d, f) for d, f in zip(iter_video_frames(out), frames))


def test_video_writer_exception_leaves_nothing(frames: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "atomic.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(out, 24) as writer:
        writer.write(frames[0])
        writer.write(frames[1])
        raise RuntimeError("boom")
    assert not out.exists() and _leftovers(tmp_path) == []


def test_video_writer_keeps_old_output_on_failure(frames: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "old.mp4"
    out.write_bytes(b"previous version")
    with pytest.raises(ValueError, match="differs from the first frame"), VideoWriter(out, 24) as writer:
        writer.write(frames[0])
        writer.write(frames[1][:90])
    assert out.read_bytes() == b"previous version" and _leftovers(tmp_path) == []


def test_video_writer_refuses_to_overwrite_input(lossless_video: Path) -> None:
    before = lossless_video.read_bytes()
    refused = pytest.raises(MediaError, match="refusing to overwrite an input")
    with refused as info, VideoWriter(lossless_video, 24, forbid=[lossless_video]) as writer:
        writer.write(np.zeros((180, 320, 3), np.uint8))
    assert str(lossless_video) in str(info.value)
    assert lossless_video.read_bytes() == before


def test_video_writer_bad_frames_and_empty(tmp_path: Path) -> None:
    out = tmp_path / "bad.mp4"
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\)"), VideoWriter(out, 24) as writer:
        writer.write(np.zeros((4, 4), np.float32))
    with pytest.raises(MediaError, match="no frames were written"), VideoWriter(out, 24):
        pass
    with (
        pytest.raises(MediaError, match="not a multiple of the yuv420p chroma"),
        VideoWriter(out, 24) as writer,
    ):
        writer.write(np.zeros((45, 80, 3), np.uint8))
    assert not out.exists() and _leftovers(tmp_path) == []


def test_video_writer_encoder_failure_surfaces_stderr(frames: list[np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "fail.mp4"
    failed = pytest.raises(FFmpegError, match=r"writing .*fail\.mp4 failed .*ffmpeg exit")
    with failed as info, VideoWriter(out, 24, codec="no_such_encoder") as writer:
        writer.write_many(frames)
    assert "no_such_encoder" in info.value.stderr
    assert not out.exists() and _leftovers(tmp_path) == []


def test_probe_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoInputError, match=r"missing\.mp4: no such file"):
        probe_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(VideoInputError, match=r"notes\.mp4: not a readable media file"):
        probe_video(text)
    with pytest.raises(VideoInputError, match="not a regular file"):
        probe_video(tmp_path)
    audio = tmp_path / "tone.wav"
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "sine=duration=0.1", str(audio)], "making a tone")
    with pytest.raises(VideoInputError, match=r"tone\.wav: contains no video stream"):
        probe_video(audio)
    with pytest.raises(VideoInputError, match="no such file"):
        next(iter_video_frames(tmp_path / "missing.mkv"))


def test_atomic_output_and_chroma(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "x.bin"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"ok")
        assert not target.exists()
    assert target.read_bytes() == b"ok"
    with pytest.raises(MediaError, match="overwrite=False"), atomic_output(target, overwrite=False):
        pass
    assert chroma_subsampling("yuv420p") == (2, 2)
    assert chroma_subsampling("yuv422p") == (2, 1)
    assert chroma_subsampling("yuv444p") == (1, 1)
    assert chroma_subsampling("gray") == (1, 1)
