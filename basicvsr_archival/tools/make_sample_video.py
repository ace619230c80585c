"""Write a short synthetic sample video, losslessly, with the project's ffmpeg: an 'original' to archive.

The frames come from ffmpeg's lavfi sources, so nothing is downloaded and the same arguments always
give the same bytes. The default ``mix`` pattern tiles four sources in a 2x2 grid, each with detail
that bicubic upscaling blurs and that an SR model can learn to restore:

* ``testsrc2``: moving shapes, colour bars and gradients, and a running clock (text, sharp edges);
* ``mandelbrot``: a slow zoom into the fractal's boundary (fine detail, smooth motion; supersampled);
* ``life``: Conway's Game of Life with colour trails, cells of a few pixels (blocky edges that change);
* ``cellauto``: an elementary cellular automaton scrolling down (binary texture, steady motion).

Contrast is moderate and a slight blur (``gblur`` sigma 0.5) softens pixel-sharp edges like a
camera's optics would, so the x2 LR frames keep enough of the detail for SR to bring back.
``--seed`` changes the content (the clock's start, the fractal spot, the random grids, the automaton
rule); ``--base OUT2`` also writes a second clip of the same kind with seed ``SEED + 1``, e.g. to
pre-train a base SR model on other footage than the one archived. Output: FFV1 in ``.mkv`` or
H.264 ``-qp 0`` in ``.mp4`` / ``.mov``, yuv420p, both lossless. Each file is rendered to a temporary
file beside it and renamed into place; an existing file is refused unless ``--overwrite``, except
one that already holds exactly the bytes asked for, which is kept (so a re-run is a no-op).
Errors are one ``error: ...`` line on stderr with exit code 1. Examples::

    python tools/make_sample_video.py results/sample.mkv
    python tools/make_sample_video.py results/sample.mkv --base results/sample_base.mkv
    python tools/make_sample_video.py clip.mp4 --pattern life --size 320x180 --fps 30000/1001 --seed 7
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NoReturn

from basicvsr_archival.utils.cli import add_debug_argument, run_cli
from basicvsr_archival.utils.ffmpeg import MediaError, as_fraction, probe_video, run_ffmpeg

PATTERNS = ("mix", "testsrc2", "mandelbrot", "life", "cellauto")
CODECS = ("auto", "ffv1", "x264")
SUFFIX_CODECS = {".mkv": ("ffv1", "x264"), ".mp4": ("x264",), ".mov": ("x264",)}
MAX_FRAMES = 100_000
MAX_SIDE = 8192
MIN_SIDE = 32
# (centre x, centre y, start scale): spots on the Mandelbrot set's boundary with detail at every zoom
MANDELBROT_SPOTS = (
    (-0.743644, -0.131826, 0.05),  # seahorse valley
    (0.2815, -0.0085, 0.02),  # elephant valley
    (-1.25066, 0.02012, 0.02),  # antenna spirals
    (-0.1011, 0.9563, 0.03),  # near the top bulb
)
CELLAUTO_RULES = (30, 110, 90, 45, 150, 105)
CELL_DIVISOR = 12  # life / cellauto cells: 1/12 of the tile's shorter side (6 px in a 128x72 tile)
LIFE_COLORS = ":life_color=#e0b050:death_color=#304060:mold_color=#5878a0"
CELLAUTO_LUT = "lutrgb=r='90+val*0.5':g='80+val*0.45':b='70+val*0.35'"  # black/white -> two mid tones
SOFTEN = "gblur=sigma=0.5"  # the optics' blur


class SampleVideoError(MediaError):
    """Invalid arguments, or an output that exists and may not be overwritten."""


@dataclass(frozen=True)
class SampleVideo:
    """A written sample: its path and what :func:`probe_video` reads back."""

    path: Path
    frames: int
    width: int
    height: int
    fps: Fraction
    codec: str
    pix_fmt: str
    bytes: int
    written: bool = True  # False: the file already held exactly these bytes and was kept


# ------------------------------------------------------------------------------------------ filter graph
def _cells(width: int, height: int) -> tuple[int, int, int]:
    """Cell size in pixels (a few pixels, so x2 / x4 downscaling blurs the edges) and the grid size."""
    cell = max(2, min(width, height) // CELL_DIVISOR)
    return cell, -(-width // cell), -(-height // cell)


def _source(pattern: str, width: int, height: int, fps: Fraction, seed: int, frames: int) -> str:
    """lavfi source chain of one pattern at ``width x height`` and exactly ``fps`` frames a second."""
    rate = f"{fps.numerator}/{fps.denominator}"
    if pattern == "testsrc2":
        start = (seed % 50) * 10  # a later start: another clock reading and other object positions
        return (
            f"testsrc2=s={width}x{height}:r={rate},trim=start_frame={start},setpts=PTS-STARTPTS,"
            "eq=contrast=0.7:saturation=0.7"
        )
    if pattern == "mandelbrot":
        x, y, scale = MANDELBROT_SPOTS[seed % len(MANDELBROT_SPOTS)]
        # zoom in by 2x over the clip (at least 24 frames' worth, so short clips still move slowly)
        return (
            f"mandelbrot=s={2 * width}x{2 * height}:r={rate}:maxiter=400:start_x={x}:start_y={y}"
            f":start_scale={scale}:end_scale={scale / 2}:end_pts={max(frames, 24)},"
            f"scale={width}:{height}:flags=area"
        )
    cell, gw, gh = _cells(width, height)
    grow = f"scale={gw * cell}:{gh * cell}:flags=neighbor,crop={width}:{height}:0:0"
    if pattern == "life":
        half = fps / 2  # one generation every two frames: changes a viewer (and an encoder) can follow
        return (
            f"life=s={gw}x{gh}:r={half.numerator}/{half.denominator}:seed={seed}:ratio=0.4:mold=12"
            f"{LIFE_COLORS},{grow},fps={rate},format=rgb24"
        )
    if pattern == "cellauto":
        rule = CELLAUTO_RULES[seed % len(CELLAUTO_RULES)]
        return (
            f"cellauto=s={gw}x{gh}:r={rate}:rule={rule}:seed={seed}:ratio=0.5:full=1,{grow},format=rgb24,"
            f"{CELLAUTO_LUT}"
        )
    raise SampleVideoError(f"unknown pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")


def filter_graph(pattern: str, width: int, height: int, fps: Fraction, seed: int, frames: int) -> str:
    """The lavfi graph of a sample: one pattern, or ``mix`` (four in a 2x2 grid), softened, yuv420p."""
    if pattern != "mix":
        return f"{_source(pattern, width, height, fps, seed, frames)},{SOFTEN},format=yuv420p"
    w0, h0 = width // 4 * 2, height // 4 * 2  # even left / top tiles; the others take the rest
    sizes = [(w0, h0), (width - w0, h0), (w0, height - h0), (width - w0, height - h0)]
    chains = [
        f"{_source(p, w, h, fps, seed, frames)}[t{i}]"
        for i, (p, (w, h)) in enumerate(zip(PATTERNS[1:], sizes))
    ]
    stack = f"[t0][t1][t2][t3]xstack=inputs=4:layout=0_0|w0_0|0_h0|w0_h0,{SOFTEN},format=yuv420p"
    return ";".join([*chains, stack])


# ------------------------------------------------------------------------------------------ writing
def _codec_for(path: Path, codec: str) -> str:
    """The encoder for ``path``: ``ffv1`` or ``x264`` (``auto``: FFV1 in .mkv, else H.264 -qp 0)."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIX_CODECS:
        raise SampleVideoError(f"{path}: the output must end in {', '.join(SUFFIX_CODECS)}")
    allowed = SUFFIX_CODECS[suffix]
    chosen = allowed[0] if codec == "auto" else codec
    if chosen not in allowed:
        raise SampleVideoError(f"{path}: --codec {codec} cannot be stored in {suffix}; use .mkv")
    return chosen


def _same_content(a: Path, b: Path) -> bool:
    """True if both files hold the same bytes."""
    return a.stat().st_size == b.stat().st_size and filecmp.cmp(a, b, shallow=False)


def _publish(tmp: Path, out: Path, overwrite: bool) -> bool:
    """Move the finished ``tmp`` onto ``out``; False (out kept, tmp removed) if out already holds it.

    Without ``overwrite`` an existing ``out`` with other content is refused, and the final step is a
    hard link, which fails instead of replacing a file that appeared meanwhile.
    """
    if out.is_file() and _same_content(tmp, out):
        tmp.unlink()
        return False
    if overwrite:
        os.replace(tmp, out)
        return True
    refuse = SampleVideoError(f"{out}: exists with other content; pass --overwrite to replace it")
    if out.exists():
        raise refuse
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise refuse from None
    except OSError:  # a file system without hard links
        os.replace(tmp, out)
    tmp.unlink(missing_ok=True)
    return True


def render_sample(
    out: str | os.PathLike, frames: int = 24, size: tuple[int, int] = (256, 144), fps: Fraction | str = "25",
    seed: int = 0, pattern: str = "mix", codec: str = "auto",
) -> Path:  # fmt: skip
    """Render the sample into a temporary file beside ``out`` (same suffix) and return its path."""
    path, rate = Path(out), check_fps(fps)
    width, height = check_size(size)
    check_frames(frames)
    if seed < 0:
        raise SampleVideoError(f"--seed must be >= 0, got {seed}")
    chosen = _codec_for(path, codec)
    if path.exists() and not path.is_file():
        raise SampleVideoError(f"{path}: exists and is not a file")
    graph = filter_graph(pattern, width, height, rate, seed, frames)
    enc = ["-c:v", "ffv1", "-level", "3"]
    if chosen == "x264":
        enc = ["-c:v", "libx264", "-qp", "0", "-preset", "veryfast"]
    # one encoder thread and bit-exact muxing: the same arguments give the same bytes on any machine
    enc += ["-threads", "1", "-pix_fmt", "yuv420p", "-fflags", "+bitexact", "-flags:v", "+bitexact"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        args = ["-y", "-f", "lavfi", "-i", graph, "-frames:v", str(frames), "-an", *enc]
        args += ["-fps_mode", "passthrough", str(tmp)]
        run_ffmpeg(args, f"writing the sample video {path}")
        os.chmod(tmp, 0o644)
        info = probe_video(tmp)
        if info.num_frames != frames or (info.width, info.height) != (width, height):
            raise SampleVideoError(
                f"{path}: ffmpeg wrote {info.num_frames} frames of {info.width}x{info.height}, "
                f"expected {frames} of {width}x{height}"
            )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_sample(
    out: str | os.PathLike, frames: int = 24, size: tuple[int, int] = (256, 144), fps: Fraction | str = "25",
    seed: int = 0, pattern: str = "mix", codec: str = "auto", overwrite: bool = False,
) -> SampleVideo:  # fmt: skip
    """Write one sample (temporary file + rename); an existing ``out`` with the same bytes is kept."""
    path = Path(out)
    tmp = render_sample(path, frames, size, fps, seed, pattern, codec)
    try:
        written = _publish(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
    return _describe(path, written)


def _describe(path: Path, written: bool) -> SampleVideo:
    """What :func:`probe_video` reads from a finished sample."""
    info = probe_video(path)
    return SampleVideo(path, info.num_frames, info.width, info.height, info.fps, info.codec, info.pix_fmt,
                       info.bytes, written)  # fmt: skip


# ------------------------------------------------------------------------------------------ arguments
def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """``(width, height)`` if both are even and within [MIN_SIDE, MAX_SIDE], else SampleVideoError."""
    w, h = (int(v) for v in size)
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE) or w % 2 or h % 2:
        raise SampleVideoError(f"--size must be WxH, both even and {MIN_SIDE}..{MAX_SIDE}, got {w}x{h}")
    return w, h


def check_frames(frames: int) -> int:
    """``frames`` if it is within 1..MAX_FRAMES, else SampleVideoError."""
    if not 1 <= frames <= MAX_FRAMES:
        raise SampleVideoError(f"--frames must be 1..{MAX_FRAMES}, got {frames}")
    return frames


def check_fps(fps: Fraction | str | int | float) -> Fraction:
    """The frame rate as a Fraction in (0, 240], else SampleVideoError."""
    try:
        rate = as_fraction(fps)
    except ValueError as exc:
        raise SampleVideoError(f"--fps: {exc}") from None
    if rate > 240:
        raise SampleVideoError(f"--fps must be at most 240, got {fps}")
    return rate


def parse_size(text: str) -> tuple[int, int]:
    """``'256x144'`` -> ``(256, 144)``, checked with :func:`check_size`."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise SampleVideoError(f"--size must look like 256x144, got {text!r}")
    return check_size((int(parts[0]), int(parts[1])))


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one SampleVideoError line (exit 1), not usage + exit 2."""

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing the usage."""
        raise SampleVideoError(f"{message} (see --help)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = _Parser(
        description="Write a short synthetic sample video (lossless) to archive, restore and evaluate.",
        epilog="Errors: one 'error: ...' line on stderr, exit code 1.",
    )
    parser.add_argument(
        "output", metavar="OUT", help="video to write: .mkv (FFV1) or .mp4 / .mov (H.264 -qp 0)"
    )
    parser.add_argument("--frames", type=int, default=24, help="number of frames (default: 24)")
    parser.add_argument("--size", default="256x144", help="WxH, both even, >= 32 (default: 256x144)")
    parser.add_argument("--fps", default="25", help="frame rate, e.g. 25 or 30000/1001 (default: 25)")
    parser.add_argument("--seed", type=int, default=0, help="content seed, >= 0 (default: 0)")
    parser.add_argument(
        "--pattern", default="mix", choices=PATTERNS,
        help="mix (default: the four others in a 2x2 grid), testsrc2, mandelbrot, life or cellauto",
    )  # fmt: skip
    parser.add_argument(
        "--codec", default="auto", choices=CODECS, help="auto (default: FFV1 for .mkv, else x264), ffv1, x264"
    )
    parser.add_argument(
        "--base", metavar="OUT2",
        help="also write a second clip of the same kind with seed SEED+1 (e.g. to pre-train a base model)",
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the sample (and the base clip) and print what was written."""
    args = parse_args(argv)
    size, fps = parse_size(args.size), check_fps(args.fps)
    check_frames(args.frames)
    outs = [(Path(args.output), args.seed)]
    if args.base:
        outs.append((Path(args.base), args.seed + 1))
        if outs[0][0].resolve() == outs[1][0].resolve():
            raise SampleVideoError(f"--base {args.base}: must differ from OUT")
    for path, _ in outs:
        _codec_for(path, args.codec)
    tmps: list[Path] = []
    try:  # render everything, then check, then publish: a refused output leaves nothing half done
        for path, seed in outs:
            tmps.append(render_sample(path, args.frames, size, fps, seed, args.pattern, args.codec))
        for (path, _), tmp in zip(outs, tmps):
            if not args.overwrite and path.exists() and not _same_content(tmp, path):
                raise SampleVideoError(f"{path}: exists with other content; pass --overwrite to replace it")
        done = [_describe(path, _publish(tmp, path, args.overwrite)) for (path, _), tmp in zip(outs, tmps)]
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
    for s, (_, seed) in zip(done, outs):
        what = "wrote" if s.written else "kept (already up to date)"
        print(f"{what} {s.path}: {s.frames} frames, {s.width}x{s.height}, {s.fps} fps, {s.codec} {s.pix_fmt}"
              f" (lossless), pattern {args.pattern}, seed {seed}, {s.bytes} bytes")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
