"""Exclusive, process-lifetime locks on files (``fcntl.flock``), for jobs that must not run twice at once.

A lock is a small file (e.g. ``WORK/.lock`` or ``OUT.lock``) locked with ``flock(LOCK_EX | LOCK_NB)``
and holding the holder's pid. The kernel releases it when the holder's file is closed or the process
dies (also on ``kill -9``), so a crashed job never leaves a stale lock: the file may remain, unlocked.
A second attempt fails at once with :class:`LockHeldError` naming the lock file and the holder's pid.

On release the lock file is removed while still locked; a waiter that opened the old file notices
(its file is no longer the one at the path) and retries, so two holders can never coexist.
Locks are per open file: a second :func:`exclusive_lock` on the same path in the same process fails too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LockHeldError", "exclusive_lock", "lock_holder"]


class LockHeldError(OSError):
    """Another process holds the lock; the message names the lock file and the holder's pid."""


def lock_holder(path: str | os.PathLike) -> int | None:
    """The pid recorded in the lock file ``path`` (None if absent, empty or unreadable)."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _try_lock(path: Path) -> int | None:
    """Open and lock ``path``; return the descriptor, or None if another process holds the lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file as we opened it: lock the new one


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str | os.PathLike | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on the file ``path`` for the block (created if needed, removed after).

    Raises :class:`LockHeldError` at once if another process (or another open in this process)
    holds it: ``"{what}: in use by another process (pid N holds {path})"``. The holder's pid is
    written into the file. The directory of ``path`` must exist.
    """
    lock = Path(path)
    fd = _try_lock(lock)
    if fd is None:
        pid = lock_holder(lock)
        holder = f"pid {pid}" if pid is not None else "a process"
        raise LockHeldError(
            f"{what or lock}: in use by another process ({holder} holds {lock}); "
            "wait for it to finish or stop it"
        )
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)
