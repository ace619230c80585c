"""The one atomic file writer: write a temporary file beside the target, then rename it into place.

A reader (or a run that was killed) sees the old file or the complete new one, never half of one:
:func:`atomic_path` yields a new hidden temporary path in the target's folder (same suffix, so tools
that pick a format by suffix, like ffmpeg or ``fig.savefig``, still do), and on success gives it the
umask's permissions (not mkstemp's 0600), flushes it to disk and renames it over the target; on an
exception it removes it and leaves the target untouched. Folders of frames are published by
renaming a temporary folder instead (``utils/output.make_temp_dir``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike
UMASK = os.umask(0o022)
os.umask(UMASK)  # the process umask, read once


def _fsync(path: Path) -> None:
    """Flush ``path``'s data to disk (so the rename never publishes an empty file after a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` when the block succeeds.

    The folder is created if needed. The temporary file exists (empty) when the block starts; the
    block may also replace it (e.g. by a hard link, whose permissions are then left alone).
    """
    out = Path(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=f".tmp{out.suffix}", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if tmp.stat().st_nlink == 1:  # our own file, not a link to someone else's
            os.chmod(tmp, 0o666 & ~UMASK)
        _fsync(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically; returns the target's path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically; returns the target's path."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: PathLike, obj: Any, default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``obj`` as JSON (indent 1, sorted keys, final newline) to ``target`` atomically."""
    return atomic_write_text(target, json.dumps(obj, indent=1, sort_keys=True, default=default) + "\n")
