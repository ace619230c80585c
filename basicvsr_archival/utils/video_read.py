"""Probing and frame reading with PyAV: one frame in memory at a time (re-exported by ``utils.ffmpeg``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from basicvsr_archival.errors import VideoInputError

PathLike = str | os.PathLike
# PyAV exposes colour metadata as ffmpeg's AVColorRange integers.
_RANGE_NAMES = {0: "unknown", 1: "tv", 2: "pc"}


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns about the first video stream of a file."""

    path: Path
    width: int
    height: int
    fps: Fraction
    num_frames: int
    pix_fmt: str
    color_range: str  # 'tv' (limited), 'pc' (full) or 'unknown'
    codec: str
    duration: float | None  # seconds, None if the container does not say
    has_audio: bool
    bytes: int
    colorspace: int = 2  # ffmpeg AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic codes;
    color_primaries: int = 2  # 2 means "unspecified"
    color_trc: int = 2


def check_input_file(path: PathLike) -> Path:
    """Return ``path`` as a ``Path`` or raise :class:`VideoInputError` if it is not a readable file."""
    p = Path(path)
    if not p.exists():
        raise VideoInputError(f"{p}: no such file")
    if not p.is_file():
        raise VideoInputError(f"{p}: not a regular file")
    return p


def open_video(path: PathLike) -> tuple[Any, Any]:
    """Open ``path`` with PyAV and return ``(container, first video stream)`` or raise VideoInputError."""
    p = check_input_file(path)
    try:
        container = av.open(str(p))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise VideoInputError(f"{p}: not a readable media file ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise VideoInputError(f"{p}: contains no video stream")
    return container, container.streams.video[0]


def _stream_fps(stream: Any) -> Fraction:
    """Nominal frame rate of a PyAV stream (average, else guessed, else base rate)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate.numerator, rate.denominator)
    raise VideoInputError(f"{stream.container.name}: video stream has no frame rate")


def _count_packets(container: Any, stream: Any) -> int:
    """Number of video packets carrying data (one per frame for every codec used here)."""
    return sum(1 for pkt in container.demux(stream) if pkt.size > 0)


def probe_video(path: PathLike) -> VideoInfo:
    """Probe the first video stream of ``path`` with PyAV.

    ``num_frames`` comes from the container when it records it (mp4), else from counting the stream's
    packets (mkv, webm, nut); use :func:`count_video_frames` with ``decode=True`` for a decoded count.
    """
    p = Path(path)
    container, stream = open_video(p)
    try:
        cc = stream.codec_context
        fps = _stream_fps(stream)
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        num_frames = stream.frames or _count_packets(container, stream)
        if container.format.name == "avi":  # AVI headers count the empty (dropped) frames of VFR files
            num_frames = _count_packets(container, stream)
        return VideoInfo(
            path=p,
            width=int(cc.width),
            height=int(cc.height),
            fps=fps,
            num_frames=int(num_frames),
            pix_fmt=str(cc.pix_fmt),
            color_range=_RANGE_NAMES.get(int(cc.color_range or 0), "unknown"),
            codec=str(cc.name),
            duration=duration,
            has_audio=bool(container.streams.audio),
            bytes=p.stat().st_size,
            colorspace=int(cc.colorspace),
            color_primaries=int(cc.color_primaries),
            color_trc=int(cc.color_trc),
        )
    except av.FFmpegError as exc:
        raise VideoInputError(f"{p}: cannot read video stream ({exc})") from exc
    finally:
        container.close()


def count_video_frames(path: PathLike, decode: bool = True) -> int:
    """Number of frames in the first video stream: decoded (exact, slower) or from the demuxer."""
    container, stream = open_video(path)
    try:
        if not decode:
            return int(stream.frames or _count_packets(container, stream))
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))
    except av.FFmpegError as exc:
        raise VideoInputError(f"{path}: decoding failed ({exc})") from exc
    finally:
        container.close()


def iter_video_frames(path: PathLike, start: int = 0) -> Iterator[np.ndarray]:
    """Yield the frames of ``path`` from index ``start`` as RGB uint8 ``(H, W, 3)`` arrays, streaming.

    Frames before ``start`` are decoded and dropped (frame-exact, no seeking). Full-range ('pc') YUV is
    converted as full range; untagged or limited-range YUV as limited range.
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    container, stream = open_video(path)
    stream.thread_type = "AUTO"
    try:
        for index, frame in enumerate(container.decode(stream)):
            if index < start:
                continue
            src_range = "JPEG" if int(frame.color_range or 0) == 2 else "MPEG"
            if frame.format.is_rgb:
                src_range = None
            rgb = frame.reformat(format="rgb24", src_color_range=src_range, dst_color_range="JPEG")
            yield rgb.to_ndarray()
    except av.FFmpegError as exc:
        raise VideoInputError(f"{path}: decoding failed ({exc})") from exc
    finally:
        container.close()
