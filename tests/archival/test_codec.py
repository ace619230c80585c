"""Tests of basicvsr_archival.archival.codec: real encodes of real REDS frames (tiny and fast)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from basicvsr_archival.archival.codec import (
    CodecError,
    CodecSettings,
    build_encode_args,
    decode_frames,
    encode_full,
    encode_lr,
)
from basicvsr_archival.utils.ffmpeg import (
    FFmpegError,
    MediaError,
    VideoInputError,
    VideoWriter,
    count_video_frames,
    ffmpeg_exe,
    frames_to_video,
    iter_video_frames,
    probe_video,
)

N_FRAMES = 8


@pytest.fixture(scope="module")
def videos(reds_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """High-quality 24 fps sources from the first real REDS frames (320x180)."""
    folder = tmp_path_factory.mktemp("codec_src")
    return {
        # yuv444p: 320x180 / 4 = 80x45 is legal for x264 only without chroma subsampling
        "444": frames_to_video(reds_demo_dir, folder / "src444.mp4", 24, max_frames=N_FRAMES, crf=0,
                               pix_fmt="yuv444p", preset="ultrafast"),
        "420": frames_to_video(reds_demo_dir, folder / "src420.mp4", 24, max_frames=N_FRAMES, crf=10,
                               preset="ultrafast"),
        "420_5": frames_to_video(reds_demo_dir, folder / "src420_5.mkv", 24, max_frames=5, crf=10,
                                 preset="ultrafast"),
    }  # fmt: skip


def _check_lr(path: Path, size: tuple[int, int], pix_fmt: str, frames: int, fps: Fraction) -> None:
    """Assert the probed LR video has the expected geometry, format, frame count and rate."""
    info = probe_video(path)
    assert (info.width, info.height) == size
    assert info.pix_fmt == pix_fmt
    assert info.num_frames == frames == count_video_frames(path, decode=True)
    assert info.fps == fps and isinstance(info.fps, Fraction)
    assert info.bytes > 0


def test_source_probe_fps_is_fraction(videos: dict[str, Path]) -> None:
    info = probe_video(videos["444"])
    assert info.fps == Fraction(24) and isinstance(info.fps, Fraction)
    assert (info.width, info.height, info.num_frames, info.pix_fmt) == (320, 180, N_FRAMES, "yuv444p")


def test_x4_libx264_crf(videos: dict[str, Path], tmp_path: Path) -> None:
    res23 = encode_lr(videos["444"], tmp_path / "lr23.mp4", CodecSettings(scale=4, codec="libx264", crf=23))
    _check_lr(res23.dst, (80, 45), "yuv444p", N_FRAMES, Fraction(24))
    assert (res23.width, res23.height, res23.num_frames, res23.pix_fmt) == (80, 45, N_FRAMES, "yuv444p")
    assert res23.bytes == res23.dst.stat().st_size > 0 and res23.seconds > 0
    cmd = res23.command
    assert cmd[0] == ffmpeg_exe() and "-fps_mode" in cmd
    assert cmd[cmd.index("-vf") + 1] == "scale=80:45:flags=bicubic,format=yuv444p"
    assert cmd[cmd.index("-crf") + 1] == "23" and "libx264" in res23.command_str
    res35 = encode_lr(
        videos["444"], tmp_path / "lr35.mp4", CodecSettings(scale=4, crf=35, downscale_filter="area")
    )
    assert 0 < res35.bytes < res23.bytes
    frames = list(decode_frames(res23.dst))
    assert len(frames) == N_FRAMES and frames[0].shape == (45, 80, 3) and frames[0].dtype == np.uint8


def test_x2_libx265(videos: dict[str, Path], tmp_path: Path) -> None:
    settings = CodecSettings(scale=2, codec="libx265", crf=28, preset="ultrafast", downscale_filter="lanczos")
    res = encode_lr(videos["420"], tmp_path / "lr.mp4", settings)
    _check_lr(res.dst, (160, 90), "yuv420p", N_FRAMES, Fraction(24))
    assert probe_video(res.dst).codec == "hevc"


def test_libaom_preserves_frames(videos: dict[str, Path], tmp_path: Path) -> None:
    settings = CodecSettings(scale=4, codec="libaom-av1", crf=40)
    assert settings.preset == "8"
    res = encode_lr(videos["420_5"], tmp_path / "lr.mkv", settings)
    # libaom accepts the odd 80x45 4:2:0 size that x264/x265 refuse
    _check_lr(res.dst, (80, 45), "yuv420p", 5, Fraction(24))
    cmd = res.command
    assert cmd[cmd.index("-crf") + 1 : cmd.index("-crf") + 4] == ["40", "-b:v", "0"]
    assert cmd[cmd.index("-cpu-used") + 1 : cmd.index("-cpu-used") + 4] == ["8", "-row-mt", "1"]


def test_bitrate_mode_and_gop(videos: dict[str, Path], tmp_path: Path) -> None:
    low = encode_lr(videos["420"], tmp_path / "low.mp4", CodecSettings(scale=2, bitrate="30k", gop=4))
    high = encode_lr(videos["420"], tmp_path / "high.mp4", CodecSettings(scale=2, bitrate="600k", gop=4))
    for res in (low, high):
        _check_lr(res.dst, (160, 90), "yuv420p", N_FRAMES, Fraction(24))
        assert "-crf" not in res.command and res.command[res.command.index("-g") + 1] == "4"
    assert low.bytes < high.bytes
    info = probe_video(low.dst)
    aom = build_encode_args(
        info, tmp_path / "x.mkv", CodecSettings(codec="libaom-av1", bitrate="500k", scale=2)
    )[0]
    assert aom[aom.index("-b:v") + 1] == "500k" and "-crf" not in aom


def test_encode_full_same_codec(videos: dict[str, Path], tmp_path: Path) -> None:
    settings = CodecSettings(scale=4, crf=23)
    full = encode_full(videos["444"], tmp_path / "full.mp4", settings)
    lr = encode_lr(videos["444"], tmp_path / "lr.mp4", settings)
    _check_lr(full.dst, (320, 180), "yuv444p", N_FRAMES, Fraction(24))
    assert full.settings.scale == 1 and full.settings.crf == 23 and "scale=" not in " ".join(full.command)
    assert full.bytes > lr.bytes


def test_full_range_is_preserved(reds_demo_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "full_range.mp4"
    lossless = frames_to_video(reds_demo_dir, tmp_path / "a.mkv", 24, max_frames=4, lossless=True)
    frames = list(iter_video_frames(lossless))
    with VideoWriter(src, 24, color_range="pc", preset="ultrafast") as writer:
        writer.write_many(frames)
    assert probe_video(src).color_range == "pc"
    res = encode_lr(src, tmp_path / "lr.mp4", CodecSettings(scale=2))
    assert probe_video(res.dst).color_range == "pc"
    assert "in_range=pc:out_range=pc" in res.command_str and "-color_range pc" in res.command_str
    assert res.pix_fmt == "yuv420p"  # the deprecated yuvj420p is mapped to yuv420p + full range


def test_errors_name_the_file(videos: dict[str, Path], reds_demo_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(VideoInputError, match=r"missing\.mp4: no such file"):
        encode_lr(missing, tmp_path / "o.mp4", CodecSettings())
    text = tmp_path / "readme.mp4"
    text.write_text("not a video")
    with pytest.raises(VideoInputError, match=r"readme\.mp4: not a readable media file"):
        encode_lr(text, tmp_path / "o.mp4", CodecSettings())
    # 4:2:0 at 320x180 / 4 = 80x45: odd height, refused by x264 (no silent rounding)
    with pytest.raises(CodecError, match=r"src420\.mp4: LR size 80x45 .* chroma subsampling"):
        encode_lr(videos["420"], tmp_path / "o.mp4", CodecSettings(scale=4))
    # 318 is not divisible by 4: refused, never rounded
    frames = [np.ascontiguousarray(f[:, :318]) for f in decode_frames(videos["444"])][:3]
    odd = tmp_path / "odd_width.mp4"
    with VideoWriter(odd, 24, pix_fmt="yuv444p", preset="ultrafast") as writer:
        writer.write_many(frames)
    with pytest.raises(CodecError, match=r"odd_width\.mp4: size 318x180 is not divisible by scale 4"):
        encode_lr(odd, tmp_path / "o.mp4", CodecSettings(scale=4))
    assert not (tmp_path / "o.mp4").exists()
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_never_overwrites_input_and_failed_encode_leaves_nothing(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    src = videos["420"]
    before = src.read_bytes()
    with pytest.raises(MediaError, match="refusing to overwrite an input"):
        encode_lr(src, src, CodecSettings(scale=2))
    assert src.read_bytes() == before
    out = tmp_path / "broken.mp4"
    with pytest.raises(FFmpegError, match=r"LR encode .*broken\.mp4 failed \(ffmpeg exit"):
        encode_lr(src, out, CodecSettings(scale=2, extra_args=("-no_such_option", "1")))
    assert list(tmp_path.iterdir()) == []


def test_settings_validation_and_dict_roundtrip() -> None:
    s = CodecSettings(scale=2, codec="libx265", bitrate="2M", preset="fast", gop=48, pix_fmt="yuv420p10le")
    assert s.crf is None and CodecSettings.from_dict(s.to_dict()) == s
    assert CodecSettings().crf == 23 and CodecSettings(codec="libx265").crf == 28
    assert CodecSettings(codec="libaom-av1", preset=4).preset == "4"
    bad = [
        ({"scale": 3}, "scale must be one of"),
        ({"crf": 20, "bitrate": "1M"}, "not both"),
        ({"codec": "h264"}, "codec must be one of"),
        ({"downscale_filter": "nearest"}, "downscale_filter"),
        ({"preset": "turbo"}, "preset for libx264"),
        ({"codec": "libaom-av1", "preset": "slow"}, "cpu-used"),
        ({"crf": 70}, r"crf for libx264 must be an int in \[0, 51\]"),
        ({"bitrate": "fast"}, "bitrate must look like"),
        ({"gop": 0}, "gop must be a positive int"),
        ({"sclae": 2}, "unknown codec setting"),
    ]
    for cfg, msg in bad:
        with pytest.raises(CodecError, match=msg):
            CodecSettings.from_dict(cfg)
