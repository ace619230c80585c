"""Output-path rules shared by the demo / inference API and tools/restore.py, and the PNG frame writer."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from basicvsr_archival.utils.output import (
    FrameWriteError,
    OutputExistsError,
    OutputIsInputError,
    OutputPathError,
    check_output_location,
    check_output_path,
    make_temp_dir,
    output_kind,
    write_png,
)


def _umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("out.mp4", "video"),
        ("OUT.MKV", "video"),
        ("a.mov", "video"),
        ("a.avi", "video"),
        ("frames", "frames"),
    ],
)
def test_output_kind_follows_the_suffix(tmp_path: Path, name: str, kind: str) -> None:
    assert output_kind(tmp_path / name) == kind
    assert check_output_path(tmp_path / name) == kind


@pytest.mark.parametrize("name", ["out.xyz", "out.png", "v1.2", "clip.webm"])
def test_unknown_extension_is_refused_unless_a_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(OutputPathError, match=rf"{re.escape(name)}: unknown output extension '\.\w+'"):
        check_output_path(tmp_path / name)
    assert output_kind(f"{tmp_path / name}/") == "frames"  # ending in '/': a folder, whatever its name
    (tmp_path / name).mkdir()
    assert output_kind(tmp_path / name) == "frames"  # an existing folder is a folder
    assert list(tmp_path.iterdir()) == [tmp_path / name]


def test_output_under_a_file_or_folder_for_a_video(tmp_path: Path) -> None:
    a_file = tmp_path / "passwd"
    a_file.write_text("root:x:0:0\n")
    for out in (a_file / "out.mp4", a_file / "deeper" / "frames"):
        with pytest.raises(OutputPathError, match=rf"{re.escape(str(a_file))} is a file, not a folder"):
            check_output_path(out)
        with pytest.raises(OutputPathError, match="is a file, not a folder"):
            check_output_location(out)
    (tmp_path / "d.mp4").mkdir()
    with pytest.raises(OutputPathError, match="is a folder, but a video file"):
        check_output_path(tmp_path / "d.mp4")
    with pytest.raises(OutputPathError, match="exists and is not a folder"):
        check_output_path(a_file)
    assert a_file.read_text() == "root:x:0:0\n"


def test_existing_outputs_need_overwrite(tmp_path: Path) -> None:
    video = tmp_path / "out.mp4"
    video.write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match=r"out\.mp4: already exists \(pass --overwrite"):
        check_output_path(video)
    assert check_output_path(video, overwrite=True) == "video"
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "00000001.png").write_bytes(b"keep")
    names = [f"{i:08d}.png" for i in range(3)]
    with pytest.raises(OutputExistsError, match=r"frames/00000001\.png: already exists"):
        check_output_path(frames, frame_names=names)
    assert check_output_path(frames, frame_names=["other.png"]) == "frames"  # no clash: frames merge in
    with pytest.raises(OutputExistsError, match=r"00000001\.png: already exists"):
        check_output_path(frames)  # frame_names=None: the whole folder is replaced, so any file counts
    assert check_output_path(frames, frame_names=names, overwrite=True) == "frames"
    assert video.read_bytes() == b"keep" and (frames / "00000001.png").read_bytes() == b"keep"


def test_inputs_are_never_outputs(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(b"x")
    cases = {src: "is", src / "sub": "is inside", tmp_path: "holds", src / "a.png": "is inside"}
    for out, where in cases.items():
        with pytest.raises(OutputIsInputError, match=rf"output {where} the input"):
            check_output_path(out, inputs=[src], overwrite=True)
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    with pytest.raises(OutputIsInputError, match="output is the input"):
        check_output_path(video, inputs=[None, video], overwrite=True)


@pytest.mark.parametrize(
    ("name", "codec", "ok"),
    [
        ("a.avi", "libx265", False),
        ("a.mp4", "ffv1", False),
        ("a.mkv", "ffv1", True),
        ("a.avi", "libx264rgb", True),
    ],
)
def test_codec_must_fit_the_container(tmp_path: Path, name: str, codec: str, ok: bool) -> None:
    if ok:
        assert check_output_path(tmp_path / name, codec=codec) == "video"
    else:
        with pytest.raises(OutputPathError, match=rf"{codec} video cannot go in \.\w+: use (\.\w+, )*\.mkv"):
            check_output_path(tmp_path / name, codec=codec)


def test_temp_dir_gets_the_umask_permissions(tmp_path: Path) -> None:
    tmp = make_temp_dir(tmp_path / "new" / "frames")
    assert tmp.parent == tmp_path / "new" and tmp.name.startswith(".frames.")
    assert stat.S_IMODE(tmp.stat().st_mode) == 0o777 & ~_umask()  # 0o755 under umask 022, not 0o700


def test_write_png_names_a_full_disk() -> None:
    frame = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(FrameWriteError) as info:
        write_png("/dev/full", frame)  # every write to /dev/full fails with ENOSPC
    assert info.value.errno == errno.ENOSPC
    match = re.fullmatch(
        r"/dev/full: cannot write PNG: disk full: (\d+) bytes free on (/\S*)", str(info.value)
    )
    assert match is not None, str(info.value)
    assert int(match.group(1)) >= 0 and Path(match.group(2)).is_dir()


def test_write_png_onto_a_full_file_system(tiny_tmpfs: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)  # ~49 KB as PNG
    write_png(tiny_tmpfs / "a.png", noise)
    with pytest.raises(FrameWriteError) as info:
        write_png(tiny_tmpfs / "b.png", noise)
    free = int(re.search(r"disk full: (\d+) bytes free on ", str(info.value)).group(1))
    assert str(info.value).endswith(f"bytes free on {tiny_tmpfs}") and free < 49_152
    assert info.value.errno == errno.ENOSPC
