"""Streaming restoration helpers: overlapped chunks of a lazy frame source, and video output with audio.

* :func:`overlapped_chunks` cuts a (lazy, possibly unbounded) frame iterable into model inputs of at
  most ``max_seq_len`` frames: the *core* frames a chunk is responsible for plus up to ``overlap``
  frames of context on each side, so that no chunk border shows in the output of a recurrent,
  bidirectional network such as BasicVSR++;
* :func:`resolve_overlap` checks / defaults the ``overlap`` argument;
* :func:`sliding_windows` gives the padded window of input frames of every output frame
  (:func:`window_indices`) for the sliding-window mode, holding about ``2 * window_size`` frames;
* :func:`write_video` encodes restored frames into an .mp4 / .mkv file and, when asked, carries the
  audio of the input video into it (:func:`basicvsr_archival.utils.audio.mux_audio`), atomically.

Host memory holds one chunk (at most ``max_seq_len + 1`` input frames) at a time, never the video.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from basicvsr_archival.utils.audio import has_audio, mux_audio
from basicvsr_archival.utils.ffmpeg import PathLike, VideoWriter, atomic_output

DEFAULT_OVERLAP = 3  # context frames on each side of a chunk when max_seq_len is set and overlap is not


class OverlapError(ValueError):
    """An ``overlap`` that does not fit ``max_seq_len`` / the restoration mode (wrapped by the API)."""


def default_overlap(max_seq_len: int | None) -> int:
    """``overlap`` used when none is given: ``min(DEFAULT_OVERLAP, max_seq_len // 4)``, 0 without chunks.

    The cap keeps at least half of every model call for core frames (at most 2x the compute of
    unoverlapped chunks); chunks of fewer than 4 frames get no overlap.
    """
    if max_seq_len is None:
        return 0
    return min(DEFAULT_OVERLAP, max_seq_len // 4)


def resolve_overlap(max_seq_len: int | None, overlap: int | None, window_size: int = 0) -> int:
    """The overlap to use: ``overlap``, or :func:`default_overlap` if None; raise OverlapError if invalid.

    Valid: an int ``>= 0`` with ``2 * overlap < max_seq_len`` (every chunk keeps at least one core
    frame). A positive overlap needs ``max_seq_len`` (the whole sequence has no borders) and the
    recurrent mode (a sliding window restores every frame from its own window anyway).
    """
    if overlap is None:
        return 0 if window_size else default_overlap(max_seq_len)
    if isinstance(overlap, bool) or not isinstance(overlap, int | np.integer) or overlap < 0:
        raise OverlapError(f"overlap must be an integer >= 0, got {overlap!r}")
    overlap = int(overlap)
    if overlap == 0:
        return 0
    if window_size:
        raise OverlapError(
            f"overlap={overlap} applies to the recurrent mode, not to window_size={window_size}"
        )
    if max_seq_len is None:
        raise OverlapError(f"overlap={overlap} needs max_seq_len (the whole sequence has no chunk borders)")
    if 2 * overlap >= max_seq_len:
        raise OverlapError(
            f"overlap={overlap} leaves no core frames in chunks of max_seq_len={max_seq_len}: "
            f"need 2 * overlap < max_seq_len (overlap <= {(max_seq_len - 1) // 2})"
        )
    return overlap


@dataclass(frozen=True)
class Chunk:
    """One model input: ``frames`` are video frames ``[start, start + len(frames))``.

    Its outputs for video frames ``[core_start, core_stop)`` are kept; the others are context.
    """

    frames: list[np.ndarray]
    start: int
    core_start: int
    core_stop: int

    @property
    def core(self) -> slice:
        """Positions of the core frames in ``frames`` (and in the model's output)."""
        return slice(self.core_start - self.start, self.core_stop - self.start)

    @property
    def stop(self) -> int:
        """Index of the video frame after the last one in ``frames``."""
        return self.start + len(self.frames)


def overlapped_chunks(
    frames: Iterable[np.ndarray], max_seq_len: int | None, overlap: int = 0
) -> Iterator[Chunk]:
    """Cut ``frames`` into overlapping model inputs, reading the iterable lazily (streaming).

    Scheme (``L = max_seq_len``, ``o = overlap``, ``2 * o < L``; ``None`` = one chunk of everything):

    1. The first chunk's core starts at frame 0; every later core starts where the previous one
       stopped, so the cores tile the video: each output frame comes from exactly one chunk, in order.
    2. A chunk whose core starts at ``c`` reads the window ``[w, w + L)`` with ``w = max(0, c - o)``:
       ``o`` frames of past context (none at the start of the video), then the core, then ``o`` frames
       of future context; its core is ``[c, w + L - o)``. So the first core has ``L - o`` frames and
       the next ones ``L - 2 * o``; a frame near a core border still sees ``o`` frames on its far side.
    3. With ``o > 0``, one frame past the window is read before the model runs, to know whether the
       video ends inside the window: if it does, that chunk is the last, its window is ``[w, end)``
       and its core ``[c, end)`` (no future context is needed at the end of the video). A video of
       at most ``L`` frames is one chunk, restored exactly like the whole sequence.
    4. Frames before the next window are dropped, so at most ``L + 1`` input frames are held.

    ``o = 0`` gives the consecutive, non-overlapping chunks of ``L`` frames of earlier versions.
    """
    if max_seq_len is None:
        every = list(frames)
        if every:
            yield Chunk(every, 0, 0, len(every))
        return
    if max_seq_len < 1 or overlap < 0 or 2 * overlap >= max_seq_len:
        raise OverlapError(
            f"need max_seq_len >= 1 and 0 <= 2 * overlap < max_seq_len, got {max_seq_len}, {overlap}"
        )
    it = iter(frames)
    buffer: list[np.ndarray] = []  # video frames [buf_start, buf_start + len(buffer))
    buf_start = 0
    exhausted = False
    core_start = 0
    while True:
        win_start = max(0, core_start - overlap)
        del buffer[: win_start - buf_start]
        buf_start = win_start
        wanted = win_start + max_seq_len + (1 if overlap else 0)  # no look-ahead needed without context
        while not exhausted and buf_start + len(buffer) < wanted:
            try:
                buffer.append(next(it))
            except StopIteration:
                exhausted = True
        end = buf_start + len(buffer)  # frames read so far (the video's length once exhausted)
        if core_start >= end:  # only for an empty input: a non-last chunk leaves frames past its core
            return
        if exhausted and end <= win_start + max_seq_len:
            yield Chunk(buffer[:], win_start, core_start, end)
            return
        win_stop = win_start + max_seq_len
        yield Chunk(buffer[: win_stop - buf_start], win_start, core_start, win_stop - overlap)
        core_start = win_stop - overlap


def chunk_plan(num_frames: int, max_seq_len: int | None, overlap: int = 0) -> list[tuple[int, int, int, int]]:
    """``(start, core_start, core_stop, stop)`` of every chunk :func:`overlapped_chunks` makes of a video."""
    return [
        (c.start, c.core_start, c.core_stop, c.stop)
        for c in overlapped_chunks(range(num_frames), max_seq_len, overlap)  # type: ignore[arg-type]
    ]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None


def release_free_memory() -> None:
    """Hand the C heap's free memory back to the OS (glibc ``malloc_trim(0)``; elsewhere a no-op).

    Called between chunks: the model's many 1-32 MB activations are served from the heap, whose free
    space fragments from one chunk to the next, so without it the peak RSS of later chunks creeps
    ~15% above the first chunk's (tiny c8n1, 160x96 input, 20-frame chunks); with it, ~3%.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


# ---------------------------------------------------------------------------------------- sliding window
def window_indices(t: int, half: int, total: int | None) -> list[int]:
    """Input frame indices of the sliding window centred on frame ``t`` (``2 * half + 1`` of them).

    Outside the sequence the indices follow the official ``pad_sequence`` of MMEditing's
    ``restoration_video_inference`` (a mirror that skips the edge frame: ``-k -> half + k`` and
    ``total - 1 + k -> total - 1 - half - k``), clamped into ``[0, total - 1]`` (replicate) for
    sequences too short for it. ``total=None`` means the sequence is known to extend past ``t + half``.
    """
    indices = []
    for k in range(t - half, t + half + 1):
        if k < 0:
            j = half - k
        elif total is not None and k >= total:
            j = total - 2 - half - (k - total)
        else:
            j = k
        indices.append(j if total is None else min(max(j, 0), total - 1))
    return indices


def sliding_windows(frames: Iterable[np.ndarray], window_size: int) -> Iterator[list[np.ndarray]]:
    """The window of input frames for each output frame, holding at most ~``2 * window_size`` frames."""
    half = window_size // 2
    it = iter(frames)
    buffer: dict[int, np.ndarray] = {}
    loaded = 0  # frames read so far
    total: int | None = None  # known once the input is exhausted

    def fill_to(index: int) -> None:
        nonlocal loaded, total
        while total is None and loaded <= index:
            try:
                buffer[loaded] = next(it)
            except StopIteration:
                total = loaded
                return
            loaded += 1

    t = 0
    while True:
        fill_to(max(t + half, 2 * half))
        if total is not None and t >= total:
            return
        yield [buffer[i] for i in window_indices(t, half, total)]
        t += 1
        for i in [i for i in buffer if i < t - 2 * half]:  # the mirrored end never reaches below t - 2*half
            del buffer[i]


# ---------------------------------------------------------------------------------------- writing
def write_video(
    frames: Iterable[np.ndarray],
    out: PathLike,
    fps: Fraction,
    *,
    crf: int = 18,
    forbid: PathLike | None = None,
    audio_from: PathLike | None = None,
    overwrite: bool = True,
) -> tuple[int, tuple[int, int], bool]:
    """Encode ``frames`` into ``out`` (x264, ``crf``), streaming; returns (frames, (w, h), audio carried).

    With ``audio_from`` (a video file), its audio streams are muxed into the output: the video is
    encoded into a temporary file, then :func:`~basicvsr_archival.utils.audio.mux_audio` writes
    video + audio into the temporary output, which is renamed onto ``out`` only when complete.
    Without audio in ``audio_from`` (or with None) the output is video-only, as before. An existing
    ``out`` is replaced only with ``overwrite``.
    """
    target = Path(out)
    count, size = 0, (0, 0)
    source = Path(audio_from) if audio_from is not None else None
    if source is None or not has_audio(source):
        with VideoWriter(target, fps=fps, crf=crf, forbid=forbid, overwrite=overwrite) as writer:
            for frame in frames:
                writer.write(frame)
                count, size = count + 1, (frame.shape[1], frame.shape[0])
        return count, size, False
    with atomic_output(target, forbid=forbid, overwrite=overwrite) as final_tmp:
        video_only = final_tmp.with_name(f"{final_tmp.stem}.video{target.suffix}")
        try:
            with VideoWriter(video_only, fps=fps, crf=crf, forbid=forbid) as writer:
                for frame in frames:
                    writer.write(frame)
                    count, size = count + 1, (frame.shape[1], frame.shape[0])
            mux_audio(video_only, source, final_tmp)
        finally:
            video_only.unlink(missing_ok=True)
    return count, size, True
