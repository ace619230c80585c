"""Preprocess for SR archival: downscale a video by 1/2/4 and encode it (x264, x265 or AV1).

What is archived is the low-resolution (LR) encode made by :func:`encode_lr`; retrieval decodes it
(:func:`decode_frames`) and super-resolves it back. :func:`encode_full` makes the full-resolution encode
with the same codec settings, the baseline the archive is compared against.

Guarantees of every encode (checked on the output after ffmpeg finishes):

1. frame count preserved: ``-fps_mode passthrough`` keeps every decoded frame with its timestamp,
   nothing is dropped or duplicated; the frame rate therefore follows the source;
2. pixel format preserved (``pix_fmt=None``) or as requested; deprecated ``yuvj*`` formats become
   ``yuv*`` tagged full range;
3. colour range: the source range ('tv'/'pc') is passed to the scaler (``in_range``/``out_range``) so
   it is not converted, and tagged on the output (``-color_range``); colorspace, primaries and transfer
   tags are copied when the source sets them;
4. size: width and height must be divisible by ``scale`` (no rounding, an error otherwise), and for
   libx264/libx265 with chroma-subsampled formats the LR size must also be a multiple of the chroma
   subsampling (e.g. 320x180 / 4 = 80x45 cannot be yuv420p with x264: error, not rounding). Rounding
   would break the exact ``scale`` ratio the SR model restores. libaom accepts odd sizes.

Audio, subtitles and data streams are not carried into the LR encode (``-an -sn -dn``); the archive
job keeps each audio stream as a member of its own (:func:`basicvsr_archival.utils.audio.extract_audio`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from basicvsr_archival.utils.ffmpeg import (
    MediaError,
    PathLike,
    VideoInfo,
    atomic_output,
    chroma_subsampling,
    command_string,
    iter_video_frames,
    probe_video,
    run_ffmpeg,
)

SCALES = (1, 2, 4)
DOWNSCALE_FILTERS = ("bicubic", "area", "lanczos")
CODECS = ("libx264", "libx265", "libaom-av1")
X26X_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)  # fmt: skip
DEFAULT_CRF = {"libx264": 23, "libx265": 28, "libaom-av1": 32}
DEFAULT_PRESET = {"libx264": "medium", "libx265": "medium", "libaom-av1": "8"}  # libaom: -cpu-used
CRF_RANGE = {"libx264": (0, 51), "libx265": (0, 51), "libaom-av1": (0, 63)}
_BITRATE_RE = re.compile(r"^\d+(\.\d+)?[kKmM]?$")
# ffmpeg codes meaning "unspecified" (2) or RGB matrix (0), which are not copied as tags.
_UNSET_COLOR_CODES = (0, 2)


class CodecError(MediaError, ValueError):
    """Invalid codec settings, or a source/output that violates the encode guarantees."""


@dataclass(frozen=True)
class CodecSettings:
    """How the LR archive (or the full-resolution baseline) is encoded.

    Exactly one of ``crf`` / ``bitrate`` is used; with neither the codec's default CRF applies
    (x264 23, x265 28, AV1 32). ``preset`` is an x264/x265 preset name, or for libaom the
    ``-cpu-used`` value (0-8, default 8, always with ``-row-mt 1``). ``pix_fmt=None`` keeps the source's.
    """

    scale: int = 4
    downscale_filter: str = "bicubic"
    codec: str = "libx264"
    crf: int | None = None
    bitrate: str | None = None
    preset: str | None = None
    gop: int | None = None
    pix_fmt: str | None = None
    extra_args: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        """Validate every field and fill codec defaults (CRF, preset)."""
        if self.scale not in SCALES:
            raise CodecError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.downscale_filter not in DOWNSCALE_FILTERS:
            raise CodecError(
                f"downscale_filter must be one of {DOWNSCALE_FILTERS}, got {self.downscale_filter!r}"
            )
        if self.codec not in CODECS:
            raise CodecError(f"codec must be one of {CODECS}, got {self.codec!r}")
        if self.crf is not None and self.bitrate is not None:
            raise CodecError(f"give crf or bitrate, not both (crf={self.crf}, bitrate={self.bitrate!r})")
        if self.crf is None and self.bitrate is None:
            object.__setattr__(self, "crf", DEFAULT_CRF[self.codec])
        if self.crf is not None:
            lo, hi = CRF_RANGE[self.codec]
            if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not lo <= self.crf <= hi:
                raise CodecError(f"crf for {self.codec} must be an int in [{lo}, {hi}], got {self.crf!r}")
        if self.bitrate is not None and not _BITRATE_RE.match(str(self.bitrate)):
            raise CodecError(f"bitrate must look like '500k', '2M' or '800000', got {self.bitrate!r}")
        preset = DEFAULT_PRESET[self.codec] if self.preset is None else str(self.preset)
        if self.codec == "libaom-av1":
            if not preset.isdigit() or not 0 <= int(preset) <= 8:
                raise CodecError(f"preset for libaom-av1 is the -cpu-used value 0-8, got {self.preset!r}")
        elif preset not in X26X_PRESETS:
            raise CodecError(f"preset for {self.codec} must be one of {X26X_PRESETS}, got {self.preset!r}")
        object.__setattr__(self, "preset", preset)
        if self.gop is not None and (
            isinstance(self.gop, bool) or not isinstance(self.gop, int) or self.gop < 1
        ):
            raise CodecError(f"gop must be a positive int keyframe interval or None, got {self.gop!r}")
        object.__setattr__(self, "extra_args", tuple(str(a) for a in self.extra_args))

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> CodecSettings:
        """Build from a config mapping; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise CodecError(f"unknown codec setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(cfg))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly) that :meth:`from_dict` turns back into equal settings."""
        d = asdict(self)
        d["extra_args"] = list(self.extra_args)
        return d


@dataclass(frozen=True)
class EncodeResult:
    """Outcome of one encode: output size in bytes, wall seconds, and the exact ffmpeg command.

    The command writes to a temporary file beside ``dst`` that was then renamed onto ``dst``.
    """

    src: Path
    dst: Path
    bytes: int
    seconds: float
    command: list[str]
    settings: CodecSettings
    width: int
    height: int
    num_frames: int
    pix_fmt: str

    @property
    def command_str(self) -> str:
        """The command as one shell-quoted string (for logs; it is never run through a shell)."""
        return command_string(self.command)


def _normalise_pix_fmt(pix_fmt: str, color_range: str) -> tuple[str, str]:
    """Map deprecated ``yuvj*`` formats to ``yuv*`` + full range; other formats pass unchanged."""
    if pix_fmt.startswith("yuvj"):
        return "yuv" + pix_fmt[4:], "pc"
    return pix_fmt, color_range


def lr_size(info: VideoInfo, settings: CodecSettings, pix_fmt: str) -> tuple[int, int]:
    """LR frame size ``(W/s, H/s)``; raise :class:`CodecError` if it is not exact or not encodable."""
    s = settings.scale
    if info.width % s or info.height % s:
        raise CodecError(
            f"{info.path}: size {info.width}x{info.height} is not divisible by scale {s}; "
            "crop the source first"
        )
    width, height = info.width // s, info.height // s
    if settings.codec in ("libx264", "libx265"):
        try:
            sx, sy = chroma_subsampling(pix_fmt)
        except MediaError as exc:
            raise CodecError(f"{info.path}: {exc}") from exc
        if width % sx or height % sy:
            raise CodecError(
                f"{info.path}: LR size {width}x{height} (scale {s}) is not a multiple of the {pix_fmt} "
                f"chroma subsampling {sx}x{sy}, which {settings.codec} requires; crop or use yuv444p"
            )
    return width, height


def build_encode_args(
    info: VideoInfo, tmp: Path, settings: CodecSettings
) -> tuple[list[str], dict[str, Any]]:
    """ffmpeg arguments (after the global options) for downscaling + encoding, and the expected output.

    Steps of the filter graph and encoder options:

    1. ``scale=W/s:H/s:flags=F[:in_range=R:out_range=R]`` (only when ``scale > 1``), where R is the
       source colour range when known, so limited stays limited and full stays full;
    2. ``format=P`` pins the pixel format P (the source's unless ``settings.pix_fmt``), so ffmpeg cannot
       silently substitute another one;
    3. rate control: x264/x265 ``-crf N`` or ``-b:v B``; libaom ``-crf N -b:v 0`` (constant quality) or
       ``-b:v B``; speed: x264/x265 ``-preset``, libaom ``-cpu-used C -row-mt 1``; ``-g`` for the GOP;
    4. ``-fps_mode passthrough`` so every input frame becomes exactly one output frame.
    """
    src_pix, src_range = _normalise_pix_fmt(info.pix_fmt, info.color_range)
    pix_fmt = settings.pix_fmt or src_pix
    width, height = lr_size(info, settings, pix_fmt)
    vf = []
    if settings.scale > 1:
        scale = f"scale={width}:{height}:flags={settings.downscale_filter}"
        if src_range in ("tv", "pc"):
            scale += f":in_range={src_range}:out_range={src_range}"
        vf.append(scale)
    vf.append(f"format={pix_fmt}")
    args = ["-y", "-i", str(info.path), "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", ",".join(vf)]
    args += ["-c:v", settings.codec, "-pix_fmt", pix_fmt]
    if src_range in ("tv", "pc"):
        args += ["-color_range", src_range]
    if not pix_fmt.startswith(("rgb", "bgr", "gbr")):
        for opt, code in (
            ("-colorspace", info.colorspace),
            ("-color_primaries", info.color_primaries),
            ("-color_trc", info.color_trc),
        ):
            if code not in _UNSET_COLOR_CODES:
                args += [opt, str(code)]
    if settings.codec == "libaom-av1":
        if settings.crf is not None:
            args += ["-crf", str(settings.crf), "-b:v", "0"]
        else:
            args += ["-b:v", str(settings.bitrate)]
        args += ["-cpu-used", str(settings.preset), "-row-mt", "1"]
    else:
        if settings.crf is not None:
            args += ["-crf", str(settings.crf)]
        else:
            args += ["-b:v", str(settings.bitrate)]
        args += ["-preset", str(settings.preset)]
        if settings.codec == "libx265":
            args += ["-x265-params", "log-level=error"]
    if settings.gop is not None:
        args += ["-g", str(settings.gop)]
    args += ["-fps_mode", "passthrough", *settings.extra_args, str(tmp)]
    expected = {"width": width, "height": height, "pix_fmt": pix_fmt, "num_frames": info.num_frames}
    return args, expected


def _check_output(out: Path, expected: Mapping[str, Any], src: Path) -> VideoInfo:
    """Probe the fresh encode and raise :class:`CodecError` if it breaks a guarantee."""
    got = probe_video(out)
    got_pix, _ = _normalise_pix_fmt(got.pix_fmt, got.color_range)
    actual = {"width": got.width, "height": got.height, "pix_fmt": got_pix, "num_frames": got.num_frames}
    bad = [f"{k} {actual[k]} != {expected[k]}" for k in expected if actual[k] != expected[k]]
    if bad:
        raise CodecError(f"{src}: encode did not preserve the source ({'; '.join(bad)})")
    return got


def _encode(src: PathLike, dst: PathLike, settings: CodecSettings, what: str) -> EncodeResult:
    """Shared body of :func:`encode_lr` / :func:`encode_full`."""
    src_path, dst_path = Path(src), Path(dst)
    info = probe_video(src_path)
    with atomic_output(dst_path, forbid=[src_path]) as tmp:
        args, expected = build_encode_args(info, tmp, settings)
        t0 = time.perf_counter()
        proc = run_ffmpeg(args, f"{what} {src_path} -> {dst_path}")
        seconds = time.perf_counter() - t0
        got = _check_output(tmp, expected, src_path)
    return EncodeResult(
        src=src_path,
        dst=dst_path,
        bytes=dst_path.stat().st_size,
        seconds=seconds,
        command=[str(a) for a in proc.args],
        settings=settings,
        width=got.width,
        height=got.height,
        num_frames=got.num_frames,
        pix_fmt=expected["pix_fmt"],
    )


def encode_lr(src: PathLike, dst: PathLike, settings: CodecSettings) -> EncodeResult:
    """Downscale ``src`` by ``settings.scale`` and encode it to ``dst`` (atomic; never over ``src``)."""
    return _encode(src, dst, settings, f"LR encode (x{settings.scale}, {settings.codec})")


def encode_full(src: PathLike, dst: PathLike, settings: CodecSettings) -> EncodeResult:
    """Encode ``src`` at full resolution with the same codec settings (``scale`` forced to 1)."""
    full = replace(settings, scale=1)
    return _encode(src, dst, full, f"full-resolution encode ({full.codec})")


def decode_frames(path: PathLike, start: int = 0) -> Iterator[np.ndarray]:
    """Frames as retrieval sees them: RGB uint8 ``(H, W, 3)``, decoded one at a time."""
    return iter_video_frames(path, start=start)
