"""``exclusive_lock``: one holder at a time across processes, released when the holder dies (kill -9)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from basicvsr_archival.utils.lock import LockHeldError, exclusive_lock, lock_holder

REPO = Path(__file__).resolve().parents[2]
_HOLD = """
import sys, time
from basicvsr_archival.utils.lock import exclusive_lock
with exclusive_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_second_process_is_refused_until_the_holder_dies(tmp_path: Path):
    lock = tmp_path / "job.lock"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(lock)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert lock_holder(lock) == holder.pid
        t0 = time.perf_counter()
        with pytest.raises(LockHeldError) as err, exclusive_lock(lock, tmp_path / "job"):
            pass
        assert time.perf_counter() - t0 < 1.0  # refused at once, no waiting
        assert str(err.value) == (
            f"{tmp_path / 'job'}: in use by another process (pid {holder.pid} holds {lock}); "
            "wait for it to finish or stop it"
        )
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs in the holder
        holder.wait(30)
    assert lock.is_file() and lock_holder(lock) == holder.pid  # the file stays, the lock does not
    with exclusive_lock(lock) as held:
        assert held == lock and lock_holder(lock) == os.getpid()
        same_process = f"pid {os.getpid()} holds"  # a second open in the same process is refused too
        with pytest.raises(LockHeldError, match=same_process), exclusive_lock(lock):
            pass
    assert not lock.exists()  # removed on a clean release
