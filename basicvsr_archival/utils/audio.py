"""Audio pass-through: carry the audio streams of an input video into a restored (video-only) file.

:func:`mux_audio` runs one ffmpeg call (an argument list through
:func:`~basicvsr_archival.utils.ffmpeg.run_ffmpeg`, never a shell string, stderr kept for the
message) that copies the video stream of the restored file and the audio streams of the input,
mapped explicitly (``-map 0:v:0 -map 1:a``). The audio is stream-copied when the output container
accepts its codec; when it does not (e.g. PCM or Vorbis into .mp4) ffmpeg refuses the copy and the
audio is re-encoded to AAC instead.
"""

from __future__ import annotations

from pathlib import Path

import av

from .ffmpeg import FFmpegError, MediaError, PathLike, check_not_input, run_ffmpeg

AAC_ARGS = ("-c:a", "aac", "-b:a", "192k")


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
    what = f"adding the audio of {src_audio} to {dst}"
    try:
        run_ffmpeg([*args, "-c:a", "copy", str(dst)], what + " (stream copy)")
        return "copy"
    except FFmpegError as copy_error:
        try:
            run_ffmpeg([*args, *AAC_ARGS, str(dst)], what + " (re-encoded to AAC)")
        except FFmpegError as aac_error:
            raise aac_error from copy_error
        return "aac"
