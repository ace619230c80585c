"""``tune_malloc``: freed large tensors are reused from the heap instead of fresh, faulted-in pages."""

import os
import platform
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only"
)

_PROBE = """
import resource, sys, torch
from basicvsr_archival.utils.memory import tune_malloc
print(tune_malloc() if sys.argv[1] == '1' else False)
def layers():  # a chain of 64 MB activations, each freed once the next exists (as in a network)
    a = torch.empty(16 << 20).fill_(1.0)
    b = a + 1
    del a
    c = b * 2
    del b, c
layers()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(8):
    layers()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(tune: str) -> tuple[str, int]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, tune], env=env, capture_output=True, text=True, check=True
    )
    flag, faults = out.stdout.split()
    return flag, int(faults)


@glibc_only
def test_tuned_heap_reuses_big_blocks():
    flag_off, faults_off = _probe("0")
    flag_on, faults_on = _probe("1")
    assert (flag_off, flag_on) == ("False", "True")
    pages = 8 * 3 * (64 << 20) // 4096  # 24 allocations of 64 MB: 393216 fresh pages untuned
    assert faults_off > pages * 3 // 4
    # most blocks come back from the heap: measured 1/8 of the pages on one host, 1/4 (+1 page) on another
    assert faults_on < pages // 3 and 3 * faults_on < faults_off
