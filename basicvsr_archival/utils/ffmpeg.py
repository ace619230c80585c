"""ffmpeg / PyAV helpers shared by the inference API and the archival tools.

* the ffmpeg binary is the static one shipped by ``imageio-ffmpeg`` (override with ``$BASICVSR_FFMPEG``);
* one-shot commands go through :func:`run_ffmpeg` (``subprocess.run`` argument lists, stderr kept);
* probing and frame reading use PyAV (streaming, one frame in memory at a time; :mod:`.video_read`,
  re-exported here);
* every output is written to a temporary file beside the target and renamed with ``os.replace`` only
  when complete, and no helper ever writes over one of its inputs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av
import numpy as np

from basicvsr_archival.errors import FFmpegError, MediaError, VideoInputError
from basicvsr_archival.utils import env
from basicvsr_archival.utils.atomic import atomic_path
from basicvsr_archival.utils.video_read import (  # noqa: F401  (re-exported: the media helpers' API)
    VideoInfo,
    count_video_frames,
    iter_video_frames,
    probe_video,
)

PathLike = str | os.PathLike
FpsLike = Fraction | int | float | str

ENV_FFMPEG = "BASICVSR_FFMPEG"
_STDERR_TAIL_LINES = 6


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$BASICVSR_FFMPEG`` if set, else the one bundled by imageio-ffmpeg."""
    override = env.read(ENV_FFMPEG)
    if override:
        return override
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _stderr_tail(stderr: str, n: int = _STDERR_TAIL_LINES) -> str:
    """Up to ``n`` non-empty stderr lines on one line: the first half (the cause) and the last half."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "(no stderr output)"
    if len(lines) > n:
        lines = [*lines[: n // 2], "...", *lines[-(n - n // 2) :]]
    return " | ".join(lines)


def run_ffmpeg(args: Sequence[str], what: str, loglevel: str = "error") -> subprocess.CompletedProcess:
    """Run ``ffmpeg -hide_banner -nostdin -loglevel LEVEL *args``; raise :class:`FFmpegError` on failure.

    ``what`` names the operation for the error message (e.g. ``"encoding clip.mp4"``); the message ends
    with the last lines of ffmpeg's stderr. Pass ``-y`` in ``args`` to write over an existing (temporary)
    output; nothing here adds it.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", loglevel, *map(str, args)]
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, errors="replace")
    except FileNotFoundError as exc:
        raise FFmpegError(f"{what} failed: ffmpeg binary not found at {cmd[0]}", cmd) from exc
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr or ""
        msg = f"{what} failed (ffmpeg exit {exc.returncode}): {_stderr_tail(stderr)}"
        raise FFmpegError(msg, cmd, stderr) from exc


def as_fraction(fps: FpsLike) -> Fraction:
    """Frame rate as an exact ``Fraction`` ('30000/1001', 25, 29.97 -> 30000/1001 via limit_denominator)."""
    if isinstance(fps, float):
        value = Fraction(fps).limit_denominator(1001 * 1000)
    else:
        try:
            value = Fraction(fps)
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"invalid frame rate {fps!r}") from exc
    if value <= 0:
        raise ValueError(f"frame rate must be positive, got {fps!r}")
    return value


def _same_file(a: PathLike, b: PathLike) -> bool:
    """True if both paths name the same file (existing files compared by inode, others by path)."""
    pa, pb = Path(a), Path(b)
    with contextlib.suppress(OSError):
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    return pa.resolve() == pb.resolve()


def check_not_input(out_path: PathLike, forbid: Iterable[PathLike] | PathLike | None) -> None:
    """Raise :class:`MediaError` if ``out_path`` is one of the ``forbid`` (input) paths."""
    if forbid is None:
        return
    items = [forbid] if isinstance(forbid, str | os.PathLike) else list(forbid)
    for item in items:
        if _same_file(out_path, item):
            raise MediaError(f"{out_path}: refusing to overwrite an input file")


@contextlib.contextmanager
def atomic_output(
    out_path: PathLike, forbid: Iterable[PathLike] | PathLike | None = None, overwrite: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``out_path`` (same suffix); rename it over ``out_path`` on success.

    On an exception the temporary file is removed and ``out_path`` is left untouched. The parent folder
    is created if needed; ``forbid`` lists inputs that must never be overwritten.
    """
    out = Path(out_path)
    check_not_input(out, forbid)
    if not overwrite and out.exists():
        raise MediaError(f"{out}: output exists and overwrite=False")
    with atomic_path(out) as tmp:
        yield tmp


def chroma_subsampling(pix_fmt: str) -> tuple[int, int]:
    """Horizontal and vertical chroma subsampling factors of a pixel format (yuv420p -> (2, 2))."""
    try:
        comps = av.VideoFormat(pix_fmt, 64, 64).components
    except ValueError as exc:
        raise MediaError(f"unknown pixel format {pix_fmt!r}") from exc
    if len(comps) < 3:
        return 1, 1
    return 64 // comps[1].width, 64 // comps[1].height


def check_even_size(width: int, height: int, pix_fmt: str, what: str) -> None:
    """Raise :class:`MediaError` unless ``width x height`` fits ``pix_fmt``'s chroma subsampling."""
    sx, sy = chroma_subsampling(pix_fmt)
    if width % sx or height % sy:
        raise MediaError(
            f"{what}: size {width}x{height} is not a multiple of the {pix_fmt} chroma subsampling ({sx}x{sy})"
        )


def _lossless_codec(codec: str) -> tuple[str, int | None, str]:
    """Exact-RGB encoder settings: ffv1 (bgr0) if asked for, else libx264rgb crf 0 (rgb24)."""
    return ("ffv1", None, "bgr0") if codec == "ffv1" else ("libx264rgb", 0, "rgb24")


class VideoWriter:
    """Encode RGB uint8 frames into a video by piping raw ``rgb24`` into an ffmpeg subprocess.

    Usage: ``with VideoWriter(out, fps=24, forbid=src) as w: w.write(frame)``. The video is written to a
    temporary file beside ``path`` and renamed onto it when the block exits normally; on an exception
    the encoder is killed and the temporary file removed. Frame size is taken from the first frame.

    Streaming needs ``subprocess.Popen`` (``subprocess.run`` cannot feed stdin incrementally); stderr
    goes to a temporary file, not a pipe, so ffmpeg can never block on it, and is quoted in errors.
    """

    def __init__(
        self,
        path: PathLike,
        fps: FpsLike,
        *,
        codec: str = "libx264",
        crf: int | None = 18,
        preset: str | None = "medium",
        pix_fmt: str | None = "yuv420p",
        lossless: bool = False,
        color_range: str | None = None,
        extra_args: Sequence[str] = (),
        forbid: Iterable[PathLike] | PathLike | None = None,
        overwrite: bool = True,
    ) -> None:
        """Configure the encoder; ``lossless`` -> libx264rgb crf 0 rgb24 (or ffv1 if ``codec='ffv1'``)."""
        self.path = Path(path)
        self.fps = as_fraction(fps)
        if lossless:
            codec, crf, pix_fmt = _lossless_codec(codec)
        self.codec, self.crf, self.preset, self.pix_fmt = codec, crf, preset, pix_fmt
        self.color_range = color_range
        self.extra_args = list(extra_args)
        self.forbid = forbid
        self.overwrite = overwrite
        self.size: tuple[int, int] | None = None  # (width, height)
        self.frames_written = 0
        self.command: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._stderr: IO[bytes] | None = None
        self._ctx: contextlib.AbstractContextManager[Path] | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> VideoWriter:
        """Reserve the temporary output file (the encoder starts with the first frame)."""
        self._ctx = atomic_output(self.path, self.forbid, self.overwrite)
        self._tmp = self._ctx.__enter__()
        return self

    def _build_command(self, width: int, height: int) -> list[str]:
        """ffmpeg argument list reading raw rgb24 from stdin and encoding to the temporary file."""
        args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        args += [
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{width}x{height}",
            "-r",
            str(self.fps),
            "-i",
            "-",
        ]
        if self.color_range in ("tv", "pc") and self.pix_fmt and not self.pix_fmt.startswith(("rgb", "bgr")):
            args += ["-vf", f"scale=out_range={self.color_range}", "-color_range", self.color_range]
        args += ["-map", "0:v:0", "-c:v", self.codec]
        if self.pix_fmt:
            args += ["-pix_fmt", self.pix_fmt]
        if self.crf is not None:
            args += ["-crf", str(self.crf)]
        if self.preset and self.codec.startswith(("libx264", "libx265")):
            args += ["-preset", self.preset]
        if self.codec == "libx265":
            args += ["-x265-params", "log-level=error"]
        args += ["-fps_mode", "passthrough", *self.extra_args, str(self._tmp)]
        return args

    def _start(self, width: int, height: int) -> None:
        """Spawn the encoder for ``width x height`` frames."""
        if self.pix_fmt:
            check_even_size(width, height, self.pix_fmt, str(self.path))
        self.size = (width, height)
        self.command = self._build_command(width, height)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __exit__
        try:
            self._proc = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr
            )
        except FileNotFoundError as exc:
            raise FFmpegError(
                f"writing {self.path} failed: ffmpeg not found at {self.command[0]}", self.command
            ) from exc

    def _read_stderr(self) -> str:
        """Everything ffmpeg wrote to stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", errors="replace")

    def _fail(self, what: str) -> FFmpegError:
        """Build the error for a dead encoder (waits for it to exit first)."""
        rc = self._proc.wait() if self._proc else None
        stderr = self._read_stderr()
        return FFmpegError(
            f"writing {self.path} failed ({what}, ffmpeg exit {rc}): {_stderr_tail(stderr)}",
            self.command,
            stderr,
        )

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 ``(H, W, 3)`` frame (all frames must have the first frame's size)."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"{self.path}: frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        if self._tmp is None:
            raise RuntimeError("VideoWriter.write() called outside its 'with' block")
        if self._proc is None:
            self._start(width, height)
        elif (width, height) != self.size:
            raise ValueError(
                f"{self.path}: frame size {width}x{height} differs from the first frame {self.size}"
            )
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except (BrokenPipeError, OSError) as exc:
            raise self._fail("encoder stopped reading frames") from exc
        self.frames_written += 1

    def write_many(self, frames: Iterable[np.ndarray]) -> None:
        """Append every frame of an iterable."""
        for frame in frames:
            self.write(frame)

    def _finish(self) -> None:
        """Close stdin, wait for ffmpeg and raise if it failed."""
        if self._proc is None:
            raise MediaError(f"{self.path}: no frames were written")
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError) as exc:
            raise self._fail("closing the frame pipe") from exc
        if self._proc.wait() != 0:
            raise self._fail("encoding")

    def _abort(self) -> None:
        """Kill the encoder (if running) without raising."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            with contextlib.suppress(OSError, ValueError):
                self._proc.stdin.close()  # type: ignore[union-attr]
            self._proc.wait()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Finish the encode and publish the file, or discard everything if the block raised."""
        assert self._ctx is not None
        try:
            if exc_type is None:
                try:
                    self._finish()
                except BaseException as err:
                    self._abort()
                    self._ctx.__exit__(type(err), err, err.__traceback__)
                    raise
                self._ctx.__exit__(None, None, None)
            else:
                self._abort()
                self._ctx.__exit__(exc_type, exc, tb)
        finally:
            if self._stderr is not None:
                self._stderr.close()
            self._tmp = None


_SEQ_RE = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)(?P<suffix>\.[^.]+)$")


def _sequence_input(files: list[Path]) -> list[str] | None:
    """image2 args for ``files`` if they form one contiguous zero-padded sequence, else None."""
    matches = [_SEQ_RE.match(f.name) for f in files]
    if not all(matches):
        return None
    first = matches[0]
    assert first is not None
    prefix, suffix, width = first["prefix"], first["suffix"], len(first["num"])
    start = int(first["num"])
    for i, m in enumerate(matches):
        assert m is not None
        if (m["prefix"], m["suffix"], len(m["num"]), int(m["num"])) != (prefix, suffix, width, start + i):
            return None
    folder = str(files[0].parent).replace("%", "%%")
    pattern = f"{folder}/{prefix.replace('%', '%%')}%0{width}d{suffix.replace('%', '%%')}"
    return ["-f", "image2", "-start_number", str(start), "-i", pattern]


def frames_to_video(
    frame_dir: PathLike,
    out_path: PathLike,
    fps: FpsLike,
    *,
    pattern: str = "*.png",
    max_frames: int | None = None,
    codec: str = "libx264",
    crf: int | None = 18,
    preset: str | None = "medium",
    pix_fmt: str | None = "yuv420p",
    lossless: bool = False,
    extra_args: Sequence[str] = (),
) -> Path:
    """Encode the images of ``frame_dir`` matching ``pattern`` (sorted by name) into ``out_path``.

    Contiguous numbered frames use ffmpeg's image2 sequence input (``%08d.png`` + ``-start_number``),
    anything else the glob input. ``max_frames`` keeps only the first N frames. ``lossless`` selects
    libx264rgb crf 0 (rgb24), or ffv1 when ``codec='ffv1'``. Returns ``out_path``.
    """
    folder = Path(frame_dir)
    if not folder.is_dir():
        raise VideoInputError(f"{folder}: frame folder not found")
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    if not files:
        raise VideoInputError(f"{folder}: no frames match {pattern!r}")
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        files = files[:max_frames]
    rate = as_fraction(fps)
    source = _sequence_input(files)
    if source is None:
        escaped = re.sub(r"([\\*?\[\]{}])", r"\\\1", str(folder))
        source = ["-f", "image2", "-pattern_type", "glob", "-i", f"{escaped}/{pattern}"]
    if lossless:
        codec, crf, pix_fmt = _lossless_codec(codec)
    out = Path(out_path)
    with atomic_output(out, forbid=files) as tmp:
        args = ["-y", "-framerate", str(rate), *source, "-frames:v", str(len(files)), "-map", "0:v:0"]
        args += ["-c:v", codec]
        if pix_fmt:
            args += ["-pix_fmt", pix_fmt]
        if crf is not None:
            args += ["-crf", str(crf)]
        if preset and codec.startswith(("libx264", "libx265")):
            args += ["-preset", preset]
        args += ["-fps_mode", "passthrough", *extra_args, str(tmp)]
        run_ffmpeg(args, f"encoding frames of {folder} into {out}")
    return out


def command_string(cmd: Sequence[str]) -> str:
    """Shell-quoted rendering of an argument list, for logs and manifests (never executed)."""
    return shlex.join([str(c) for c in cmd])
