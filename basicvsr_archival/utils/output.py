"""Output paths of the restoring tools: which kind of output a path names, and whether it may be written.

One set of rules for the inference API / demo and for ``tools/restore.py`` (and the location checks
of ``tools/archive.py``), checked before any work starts:

* a path ending in one of :data:`VIDEO_CONTAINERS`' suffixes is a video file; a path without a suffix,
  ending in ``/`` or naming an existing folder is a folder of PNG frames; any other suffix is refused
  (it used to become a folder of PNGs silently);
* the output may be neither an input nor inside one, nor a folder holding one;
* its folder must be a folder (not a file somewhere up the path) and writable;
* an existing output (a video file, or a same-named frame in a folder) is refused unless ``overwrite``.

It also holds the frame writer shared by both tools, which names a full disk as such.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from basicvsr_archival.errors import FrameWriteError, OutputExistsError, OutputIsInputError, OutputPathError

from .atomic import UMASK
from .ffmpeg import PathLike

# Containers the restoring tools write, and the encoders each takes (checked with this project's
# ffmpeg: each pair writes a file that decodes frame-exactly; libx265 in .avi and FFV1 outside
# Matroska write files that do not decode or that few players read, so they are refused).
VIDEO_CONTAINERS: dict[str, tuple[str, ...]] = {
    ".mp4": ("libx264", "libx264rgb", "libx265"),
    ".mkv": ("libx264", "libx264rgb", "libx265", "ffv1"),
    ".mov": ("libx264", "libx264rgb", "libx265"),
    ".avi": ("libx264", "libx264rgb"),
}
VIDEO_SUFFIXES = tuple(VIDEO_CONTAINERS)


def _suffixes() -> str:
    """``.mp4, .mkv, .mov, .avi`` for messages."""
    return ", ".join(VIDEO_SUFFIXES)


def output_kind(output: PathLike) -> str:
    """``'video'`` or ``'frames'`` for an output path (module docstring); else OutputPathError."""
    text, path = os.fspath(output), Path(output)
    suffix = path.suffix.lower()
    if text.endswith(("/", os.sep)) or not suffix:
        return "frames"
    if suffix in VIDEO_CONTAINERS:
        return "video"
    if path.is_dir():
        return "frames"
    raise OutputPathError(
        f"{path}: unknown output extension {path.suffix!r}: give a video file ({_suffixes()}) or a folder "
        "for PNG frames (a path without extension, or ending in '/')"
    )


def is_video_output(output: PathLike) -> bool:
    """True if ``output`` names a video file (by its suffix), False for a folder of PNG frames."""
    return Path(output).suffix.lower() in VIDEO_CONTAINERS and not os.fspath(output).endswith(("/", os.sep))


def check_output_location(output: PathLike) -> None:
    """Raise OutputPathError unless ``output``'s folder is (or can be made) a writable folder."""
    path = Path(output)
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        if folder.is_symlink():  # a dangling link: mkdir would fail on it
            raise OutputPathError(f"{path}: {folder} is a broken symbolic link")
        folder = folder.parent
    if not folder.is_dir():
        raise OutputPathError(f"{path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path}: folder {folder} is not writable")


def _holds(folder: Path, item: Path) -> bool:
    """True if ``item`` is ``folder`` or lies inside it (symbolic links resolved)."""
    a, b = folder.resolve(), item.resolve()
    return a == b or a in b.parents


def check_output_path(
    output: PathLike,
    *,
    inputs: Iterable[PathLike | None] = (),
    overwrite: bool = False,
    frame_names: Iterable[str] | None = None,
    codec: str | None = None,
    frames_only: bool = False,
) -> str:
    """Check an output path before any work; return its kind (``'video'`` / ``'frames'``).

    Raises :class:`OutputPathError` for an unknown extension, a path that is / is inside / holds one
    of ``inputs`` (:class:`OutputIsInputError`), a folder that is a file or not writable, a video
    path that is a folder (or a frame path that is a file), a ``codec`` its container does not take;
    :class:`OutputExistsError` for an existing output unless ``overwrite``: an existing video file; in
    an existing folder, one of ``frame_names`` (or, with ``frame_names=None``, anything at all, for a
    writer that replaces the whole folder). ``frames_only`` (a writer that replaces the whole folder):
    an existing output folder may hold PNG frames only (else OutputPathError, even with ``overwrite``).
    """
    out = Path(output)
    for item in inputs:
        if item is None:
            continue
        src = Path(item)
        if _holds(src, out) or (out.exists() and _holds(out, src)):
            where = "is" if out.resolve() == src.resolve() else "is inside" if _holds(src, out) else "holds"
            raise OutputIsInputError(
                f"{out}: output {where} the input {src}: refusing to overwrite the input"
            )
    kind = output_kind(output)
    check_output_location(out)
    if kind == "video":
        if out.is_dir():
            raise OutputPathError(
                f"{out}: is a folder, but a video file output was asked for (by its suffix)"
            )
        accepted = VIDEO_CONTAINERS[out.suffix.lower()]
        if codec is not None and codec not in accepted:
            fits = [s for s, codecs in VIDEO_CONTAINERS.items() if codec in codecs]
            raise OutputPathError(f"{out}: {codec} video cannot go in {out.suffix}: use {', '.join(fits)}")
        if out.exists() and not overwrite:
            raise OutputExistsError(f"{out}: already exists (pass --overwrite to replace it)")
        return kind
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: exists and is not a folder (PNG frames need a folder)")
    if out.is_dir() and not overwrite:
        names = [p.name for p in out.iterdir()] if frame_names is None else list(frame_names)
        clash = next((out / n for n in names if os.path.lexists(out / n)), None)
        if clash is not None:
            raise OutputExistsError(f"{clash}: already exists (pass --overwrite to replace it)")
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise OutputPathError(f"{out}: folder is not writable")
    if (
        frames_only
        and out.is_dir()
        and any(f.suffix.lower() != ".png" or not f.is_file() for f in out.iterdir())
    ):
        raise OutputPathError(f"{out}: holds files other than PNG frames; choose an empty or new folder")
    return kind


def make_temp_dir(output: PathLike) -> Path:
    """A new empty folder beside ``output`` (hidden name), with the umask's permissions (not 0700)."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    os.chmod(tmp, 0o777 & ~UMASK)  # mkdtemp makes 0700: a published frame folder must be readable
    return tmp


def _mount_point(path: Path) -> Path:
    """The mount point of the file system holding ``path`` (or its nearest existing folder)."""
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def disk_full_message(path: PathLike) -> str:
    """``disk full: N bytes free on <mount>`` for the file system of ``path``."""
    mount = _mount_point(Path(path))
    try:
        free = shutil.disk_usage(mount).free
    except OSError:
        return f"disk full on {mount}"
    return f"disk full: {free} bytes free on {mount}"


def write_png(path: PathLike, frame: np.ndarray) -> None:
    """Write an RGB uint8 frame as PNG to ``path``; raise FrameWriteError (one line naming the file).

    The PNG is encoded in memory and written by Python, so a full disk raises ``ENOSPC`` and is
    reported as such (``... disk full: N bytes free on /mnt``) instead of a libpng line.
    """
    ok, data = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not ok:
        raise FrameWriteError(f"{path}: cannot encode PNG (frame {frame.dtype} {frame.shape})")
    try:
        with open(path, "wb") as fh:
            fh.write(data.tobytes())
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        reason = disk_full_message(path) if full else exc.strerror
        err = FrameWriteError(f"{path}: cannot write PNG: {reason}")
        err.errno = exc.errno
        raise err from None
