"""Frame times of a video: detect a variable frame rate, and put the source's frame times back.

:func:`frame_times` reads the presentation times of the first video stream from its packets (no
decoding); :meth:`FrameTimes.is_vfr` says whether they stray from the nominal rate's grid;
:func:`retime_video` copies a (uniformly timed) encode into Matroska with given frame times, packets
copied, not re-encoded. The archive job records the source's frame times and restore applies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av

from .ffmpeg import FpsLike, MediaError, PathLike, VideoInputError, as_fraction, check_not_input
from .video_read import open_video


@dataclass(frozen=True)
class FrameTimes:
    """Presentation times of the frames of a video stream: ``pts`` (sorted) in units of ``time_base``."""

    time_base: Fraction
    pts: tuple[int, ...]

    def seconds(self) -> list[float]:
        """Frame times in seconds after the first frame."""
        return [float((p - self.pts[0]) * self.time_base) for p in self.pts]

    def is_vfr(self, fps: FpsLike) -> bool:
        """True if a frame strays from the uniform grid ``t0 + i / fps`` by more than a quarter frame."""
        step = 1 / as_fraction(fps)
        return any(
            abs((p - self.pts[0]) * self.time_base - i * step) > step / 4 for i, p in enumerate(self.pts)
        )


def frame_times(path: PathLike) -> FrameTimes | None:
    """Frame times of the first video stream from its packets (no decoding); None if any lacks a pts."""
    container, stream = open_video(path)
    try:
        pts = [pkt.pts for pkt in container.demux(stream) if pkt.size > 0]
        time_base = stream.time_base
    except av.FFmpegError as exc:
        raise VideoInputError(f"{path}: cannot read video packets ({exc})") from exc
    finally:
        container.close()
    if not pts or any(p is None for p in pts) or time_base is None:
        return None
    return FrameTimes(Fraction(time_base.numerator, time_base.denominator), tuple(sorted(pts)))


def retime_video(src: PathLike, dst: PathLike, seconds: Sequence[Fraction | float]) -> None:
    """Copy the first video stream of ``src`` into ``dst`` (.mkv) showing frame ``i`` at ``seconds[i]``.

    Packets are copied (no re-encoding); presentation order is kept and decode timestamps are the
    sorted new times shifted just enough to stay at or before each frame's time (B-frames). ``dst``
    is written directly (callers pass a temporary name).
    """
    check_not_input(dst, [src])
    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        packets = [pkt for pkt in inp.demux(stream) if pkt.size > 0]
        if len(packets) != len(seconds):
            raise MediaError(f"{src}: has {len(packets)} frames but {len(seconds)} frame times were given")
        tb = Fraction(1, 1_000_000)  # microseconds; the muxer rescales to its own time base
        new = sorted(round(Fraction(t) / tb) for t in seconds)
        rank = {j: r for r, j in enumerate(sorted(range(len(packets)), key=lambda j: packets[j].pts))}
        pts = [new[rank[j]] for j in range(len(packets))]
        lag = max(0, *(new[j] - pts[j] for j in range(len(packets))))
        with av.open(str(dst), "w", format="matroska") as out:
            ostream = out.add_stream_from_template(stream)
            for j, pkt in enumerate(packets):
                pkt.stream, pkt.time_base = ostream, tb
                pkt.pts, pkt.dts = pts[j], new[j] - lag
                out.mux(pkt)


def vfr_warning(path: PathLike, fps: FpsLike) -> str | None:
    """One warning line if ``path``'s video has a variable frame rate (evenly spaced output), else None."""
    times = frame_times(path)
    if times is None or not times.is_vfr(fps):
        return None
    return (
        f"warning: {path}: variable frame rate ({len(times.pts)} frames over {times.seconds()[-1]:.1f} s, "
        f"nominal {float(as_fraction(fps)):.3g} fps); the output's frames are evenly spaced at that rate"
    )
