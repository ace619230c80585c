"""Audio pass-through: carry the audio streams of an input video into a restored (video-only) file.

Two uses: the demo / inference API copies the audio of its input video into its output
(:func:`mux_audio`); the archive job keeps each audio stream of the source as a Matroska audio
member (:func:`extract_audio`) and restore muxes them back (:func:`mux_streams`).

:func:`mux_audio` runs one ffmpeg call (an argument list through
:func:`~basicvsr_archival.utils.ffmpeg.run_ffmpeg`, never a shell string, stderr kept for the
message) that copies the video stream of the restored file and the audio streams of the input,
mapped explicitly (``-map 0:v:0 -map 1:a``). The audio is stream-copied when the output container
accepts its codec; when it does not (e.g. PCM or Vorbis into .mp4) ffmpeg refuses the copy and the
audio is re-encoded to AAC instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av

from .ffmpeg import FFmpegError, MediaError, PathLike, atomic_output, check_not_input, run_ffmpeg

AAC_ARGS = ("-c:a", "aac", "-b:a", "192k")
AUDIO_MEMBER = "audio{index}.mka"  # Matroska holds AAC, MP3, AC3, E-AC3, DTS, Opus, Vorbis, FLAC, most PCM
BITEXACT = ("-fflags", "+bitexact")  # no encoder version string or random ids: reproducible files


def audio_codecs(path: PathLike) -> list[str]:
    """Codec names of the audio streams of a media file (empty if it has none or cannot be read)."""
    try:
        with av.open(str(path)) as container:
            return [str(s.codec_context.name) for s in container.streams.audio]
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return []


def has_audio(path: PathLike) -> bool:
    """True if ``path`` is a readable media file with at least one audio stream."""
    p = Path(path)
    return p.is_file() and bool(audio_codecs(p))


def mux_audio(video: PathLike, audio_from: PathLike, out: PathLike) -> str:
    """Write ``out``: the first video stream of ``video`` (copied) + every audio stream of ``audio_from``.

    Returns ``'copy'`` if the audio was stream-copied, ``'aac'`` if it had to be re-encoded. ``out``
    is written directly (callers pass a temporary file and rename it); it may be neither input.
    Raises :class:`FFmpegError` (with ffmpeg's stderr) if even the AAC re-encode fails.
    """
    src_video, src_audio, dst = Path(video), Path(audio_from), Path(out)
    check_not_input(dst, [src_video, src_audio])
    if not audio_codecs(src_audio):
        raise MediaError(f"{src_audio}: has no audio stream to carry into {dst}")
    args = ["-y", "-i", str(src_video), "-i", str(src_audio), "-map", "0:v:0", "-map", "1:a", "-c:v", "copy"]
    return _copy_or_aac(args, dst, f"adding the audio of {src_audio} to {dst}")


def _copy_or_aac(args: Sequence[str], dst: Path, what: str) -> str:
    """Run ffmpeg ``args`` into ``dst`` with the audio stream-copied, or re-encoded to AAC if refused."""
    try:
        run_ffmpeg([*args, "-c:a", "copy", str(dst)], what + " (stream copy)")
        return "copy"
    except FFmpegError as copy_error:
        try:
            run_ffmpeg([*args, *AAC_ARGS, str(dst)], what + " (re-encoded to AAC)")
        except FFmpegError as aac_error:
            raise aac_error from copy_error
        return "aac"


@dataclass(frozen=True)
class AudioStream:
    """One audio stream of a media file; ``start_offset``: its start minus the first video stream's (s)."""

    index: int  # among the audio streams (ffmpeg's ``0:a:INDEX``)
    codec: str
    channels: int
    sample_rate: int
    layout: str
    sample_format: str
    start_offset: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return asdict(self)


def _start_seconds(stream: Any) -> float:
    """Start time of a PyAV stream in seconds (0 when the container does not say)."""
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def audio_streams(path: PathLike) -> list[AudioStream]:
    """The audio streams of ``path`` (codec, channels, rate, layout, start relative to the video)."""
    try:
        with av.open(str(path)) as container:
            video = container.streams.video
            t0 = _start_seconds(video[0]) if video else 0.0
            return [
                AudioStream(
                    index=i,
                    codec=str(s.codec_context.codec.canonical_name),
                    channels=int(s.codec_context.layout.nb_channels),
                    sample_rate=int(s.codec_context.sample_rate),
                    layout=str(s.codec_context.layout.name),
                    sample_format=str(s.codec_context.format.name if s.codec_context.format else ""),
                    start_offset=round(_start_seconds(s) - t0, 6),
                )
                for i, s in enumerate(container.streams.audio)
            ]
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise MediaError(f"{path}: cannot read its audio streams ({exc})") from None


def audio_duration(path: PathLike, index: int = 0) -> float:
    """Duration (s) of an audio stream: from its first packet to the end of its last one."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[index]
        ends = [(p.pts, p.pts + (p.duration or 0)) for p in container.demux(stream) if p.pts is not None]
    if not ends:
        return 0.0
    return float((max(e for _, e in ends) - min(s for s, _ in ends)) * stream.time_base)


def lossless_fallback(sample_format: str) -> tuple[str, ...]:
    """Encoder args that keep decoded samples exactly: float PCM for float formats, else FLAC."""
    if sample_format.startswith("flt"):
        return ("-c:a", "pcm_f32le")
    if sample_format.startswith("dbl"):
        return ("-c:a", "pcm_f64le")
    return ("-c:a", "flac", "-compression_level", "8")


def extract_audio(src: PathLike, out_dir: PathLike) -> list[dict[str, Any]]:
    """Write each audio stream of ``src`` to ``OUT_DIR/audio<i>.mka``; returns one record per stream.

    A stream is copied bit for bit (``method='copy'``) when Matroska takes its codec; otherwise it is
    re-encoded losslessly (``method='lossless'``: FLAC, or little-endian float PCM for float samples).
    Timestamps are kept, so the record's ``start_offset`` (seconds after the first video frame) and
    the member's own start agree. Each file is written atomically; ``src`` is never written.
    """
    source, folder = Path(src), Path(out_dir)
    records = []
    for stream in audio_streams(source):
        name = AUDIO_MEMBER.format(index=stream.index)
        args = ["-y", "-i", str(source), "-map", f"0:a:{stream.index}", "-vn", "-sn", "-dn", *BITEXACT]
        what = f"copying audio stream {stream.index} of {source} into {name}"
        with atomic_output(folder / name, forbid=[source]) as tmp:
            try:
                run_ffmpeg([*args, "-c:a", "copy", str(tmp)], what)
                method = "copy"
            except FFmpegError:
                run_ffmpeg([*args, *lossless_fallback(stream.sample_format), str(tmp)], what + " (lossless)")
                method = "lossless"
        stored = audio_streams(folder / name)[0]
        record = stream.to_dict() | {"member": name, "role": "audio", "method": method}
        record |= {"stored_codec": stored.codec, "duration": round(audio_duration(folder / name), 6)}
        records.append(record)
    return records


def mux_streams(video: PathLike, audio: Sequence[tuple[PathLike, float]], out: PathLike) -> str:
    """Write ``out``: the video of ``video`` + each ``(audio file, start offset in s)``, all copied.

    The offsets place each audio's first sample relative to the first video frame (``-itsoffset``).
    Returns ``'copy'``, or ``'aac'`` if the container refused an audio codec and the audio had to be
    re-encoded (e.g. PCM into .mp4); ``''`` when there is no audio. Muxing is ``+bitexact``.
    """
    dst = Path(out)
    check_not_input(dst, [Path(video), *(Path(a) for a, _ in audio)])
    shift = -min([0.0, *(off for _, off in audio)])  # negative offsets: delay the video instead
    args = ["-y", *(["-itsoffset", f"{shift:.6f}"] if shift else []), "-i", str(video)]
    for path, offset in audio:
        args += [*(["-itsoffset", f"{offset + shift:.6f}"] if offset + shift else []), "-i", str(path)]
    args += ["-map", "0:v:0", *(a for i in range(len(audio)) for a in ("-map", f"{i + 1}:a"))]
    args += ["-c:v", "copy", *BITEXACT]
    if not audio:
        run_ffmpeg([*args, str(dst)], f"remuxing {video} into {dst}")
        return ""
    return _copy_or_aac(args, dst, f"muxing {len(audio)} audio stream(s) into {dst}")
