"""Process memory settings for CPU inference: keep big freed blocks in the C heap instead of unmapping them.

glibc serves allocations above its mmap threshold (at most 32 MB, adapted at run time) with fresh
``mmap`` pages and unmaps them on free, and trims the heap top above its trim threshold. BasicVSR++
allocates and frees many large activations per frame (100 MB offsets, 236 MB 720p features), so
every one of them comes back as fresh pages that the kernel must fault in and zero: measured
913 MB of page faults per frame for c64n7 at 180x320 (2-core AVX2 EPYC; about 0.3 ms per MB),
105 MB with :func:`tune_malloc`, which keeps freed blocks in the heap for reuse (up to 1 GB).
The streaming restorer still hands free memory back between chunks (``malloc_trim``).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import platform

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_KEEP_BYTES = 1 << 30


@functools.cache
def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds to 1 GB once per process; True if they were set.

    A no-op (False) off glibc. The CPU backend calls it unless its settings say ``malloc_tune=False``
    (``models/backends``).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
    logger.debug("glibc mmap/trim thresholds raised to %d bytes: %s", _KEEP_BYTES, ok)
    return ok
