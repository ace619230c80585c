"""``tools/make_sample_video.py``: frame count and size, lossless storage, no-clobber writes, errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import av
import numpy as np
import pytest

from basicvsr_archival.utils.cli import run_cli
from basicvsr_archival.utils.ffmpeg import run_ffmpeg

REPO = Path(__file__).resolve().parents[2]
TOOL_PATH = REPO / "tools" / "make_sample_video.py"


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    """The tool's module (``tools/make_sample_video.py`` runs its ``main``)."""
    return importlib.import_module("basicvsr_archival.tools.make_sample_video")


def _decoded_planes(path: Path) -> tuple[list[np.ndarray], str, str]:
    """Every decoded frame as its raw yuv420p planes (h * 3/2, w), the codec and the pixel format."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt
        frames = [f.to_ndarray() for f in container.decode(stream)]
    return frames, codec, pix_fmt


def _reference_planes(tool: ModuleType, tmp: Path, frames: int, w: int, h: int, seed: int) -> np.ndarray:
    """The frames of the tool's filter graph as ffmpeg renders them straight to raw yuv420p."""
    raw = tmp / f"ref_{seed}.yuv"
    graph = tool.filter_graph("mix", w, h, Fraction(25), seed, frames)
    run_ffmpeg(["-y", "-f", "lavfi", "-i", graph, "-frames:v", str(frames), "-f", "rawvideo",
                "-pix_fmt", "yuv420p", str(raw)], "reference render")  # fmt: skip
    return np.fromfile(raw, dtype=np.uint8).reshape(-1, h * 3 // 2, w)


def _run(tool: ModuleType, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """The command in-process (``run_cli(main, args)``): exit code, stdout, stderr."""
    rc = run_cli(tool.main, list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize(("name", "codec"), [("clip.mkv", "ffv1"), ("clip.mp4", "h264")])
def test_sample_has_the_asked_frames_size_and_is_lossless(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture, name: str, codec: str
) -> None:
    out = tmp_path / "sub" / name  # the parent folder is created
    rc, stdout, err = _run(tool, capsys, str(out), "--frames", "7", "--size", "96x64", "--seed", "3")
    assert (rc, err) == (0, "")
    assert stdout.startswith(f"wrote {out}: 7 frames, 96x64, 25 fps, {codec} yuv420p")
    frames, got_codec, pix_fmt = _decoded_planes(out)
    assert (len(frames), frames[0].shape, got_codec, pix_fmt) == (7, (96, 96), codec, "yuv420p")
    # lossless: the decoded planes equal ffmpeg's direct raw render of the same graph, bit for bit
    ref = _reference_planes(tool, tmp_path, 7, 96, 64, 3)
    assert ref.shape == (7, 96, 96)
    assert all(np.array_equal(a, b) for a, b in zip(frames, ref))
    # content that moves and has texture, not flat colour
    luma = np.stack(frames)[:, :64].astype(np.float64)
    assert luma.std() > 25
    assert np.abs(luma[6] - luma[0]).mean() > 5
    assert [p.name for p in out.parent.iterdir()] == [name]  # no temporary file left behind


def test_base_clip_is_different_and_reruns_keep_identical_files(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    a, b = tmp_path / "a.mkv", tmp_path / "b.mkv"
    args = [str(a), "--base", str(b), "--frames", "4", "--size", "64x48"]
    rc, stdout, _ = _run(tool, capsys, *args)
    assert rc == 0 and stdout.count("wrote ") == 2 and "seed 0" in stdout and "seed 1" in stdout
    fa, fb = _decoded_planes(a)[0], _decoded_planes(b)[0]
    assert len(fa) == len(fb) == 4 and fa[0].shape == fb[0].shape == (72, 64)
    assert np.abs(fa[0].astype(int) - fb[0].astype(int)).mean() > 5  # other seed: other content
    before = (a.stat().st_mtime_ns, b.stat().st_mtime_ns, a.read_bytes())
    rc, stdout, _ = _run(tool, capsys, *args)  # same arguments: the same bytes, files left untouched
    assert rc == 0 and stdout.count("kept (already up to date)") == 2
    assert (a.stat().st_mtime_ns, b.stat().st_mtime_ns, a.read_bytes()) == before
    rc, _, err = _run(tool, capsys, str(a), "--base", str(a))
    assert rc == 1 and "must differ from OUT" in err


def test_refuses_to_overwrite_unless_asked(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out, base = tmp_path / "s.mkv", tmp_path / "s_base.mkv"
    out.write_bytes(b"precious")
    rc, stdout, err = _run(tool, capsys, str(out), "--base", str(base), "--frames", "2", "--size", "32x32")
    assert rc == 1 and stdout == ""
    assert err == f"error: {out}: exists with other content; pass --overwrite to replace it\n"
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mkv"]  # nothing half done, no temp files
    rc, _, err = _run(tool, capsys, str(out), "--frames", "2", "--size", "32x32", "--overwrite")
    assert (rc, err) == (0, "")
    assert len(_decoded_planes(out)[0]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x.mkv", "--frames", "0"], "--frames must be 1..100000, got 0"),
        (["x.mkv", "--frames", "two"], "argument --frames: invalid int value: 'two'"),
        (["x.mkv", "--size", "33x32"], "--size must be WxH, both even and 32..8192, got 33x32"),
        (["x.mkv", "--size", "16x16"], "--size must be WxH, both even and 32..8192, got 16x16"),
        (["x.mkv", "--size", "big"], "--size must look like 256x144, got 'big'"),
        (["x.mkv", "--fps", "-5"], "--fps: frame rate must be positive"),
        (["x.mkv", "--fps", "1000"], "--fps must be at most 240"),
        (["x.mkv", "--seed", "-1"], "--seed must be >= 0, got -1"),
        (["x.mkv", "--pattern", "plasma"], "argument --pattern: invalid choice: 'plasma'"),
        (["x.avi"], "x.avi: the output must end in .mkv, .mp4, .mov"),
        (["x.mp4", "--codec", "ffv1"], "x.mp4: --codec ffv1 cannot be stored in .mp4"),
        ([], "the following arguments are required: OUT"),
    ],
)
def test_bad_arguments_exit_1_with_one_line(
    tool: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, stdout, err = _run(tool, capsys, *args)
    assert rc == 1 and stdout == ""
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_script_exit_codes_and_help(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = [sys.executable, str(TOOL_PATH)]
    bad = subprocess.run(
        [*run, str(tmp_path / "x.mkv"), "--frames", "0"], capture_output=True, text=True, env=env
    )
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "error: --frames must be 1..100000, got 0\n"
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True, env=env)
    assert helped.returncode == 0 and helped.stderr == ""
    for option in ("--frames", "--size", "--fps", "--seed", "--pattern", "--base", "--overwrite", "--codec"):
        assert option in helped.stdout
    ok = subprocess.run([*run, str(tmp_path / "y.mkv"), "--frames", "3", "--size", "32x32"], env=env,
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert len(_decoded_planes(tmp_path / "y.mkv")[0]) == 3
