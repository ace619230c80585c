"""Build and load the fused CPU sampling kernels (``dcn_cpu.c``: deformable convolutions).

The kernel is plain C with no Python or torch headers, so the system C compiler builds it
in about a second on first use; the shared object is cached under
``$BASICVSR_CACHE_DIR`` (default ``~/.cache/basicvsr_archival``), keyed by the source, the
compiler flags and the CPU, and loaded with ``ctypes``.  Where no compiler is found the
loader returns ``None`` and the deformable convolution uses its pure-PyTorch path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("dcn_cpu.c")
# -fno-trapping-math lets the rounding in the kernel's polynomial exp vectorise; NaN semantics are kept
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC", "-std=c11"]


def _cpu_signature() -> str:
    """Model name and feature flags of this CPU (what ``-march=native`` compiles for)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def _cache_dir() -> Path:
    """Folder holding compiled kernels."""
    root = os.environ.get("BASICVSR_CACHE_DIR") or Path.home() / ".cache" / "basicvsr_archival"
    return Path(root) / "kernels"


def _compiler() -> str | None:
    """The C compiler to use: ``$CC``, else ``cc`` or ``gcc`` on PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@functools.lru_cache(maxsize=1)
def load_cpu_kernel() -> ctypes.CDLL | None:
    """Compile (once, cached on disk) and load ``dcn_cpu.c``; ``None`` when that is impossible."""
    if platform.system() == "Windows":
        return None
    cc = _compiler()
    if cc is None:
        logger.info("no C compiler found: deformable convolution uses the pure-PyTorch path")
        return None
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(
        source + " ".join([cc, *_FLAGS]).encode() + _cpu_signature().encode() + platform.machine().encode()
    ).hexdigest()[:16]
    target = _cache_dir() / f"dcn_cpu_{key}.so"
    if not target.is_file():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
            os.close(fd)
            proc = subprocess.run(
                [cc, *_FLAGS, str(_SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                os.unlink(tmp)
                logger.warning(
                    "building the fused DCN kernel failed (%s); using the pure-PyTorch path",
                    proc.stderr[-500:],
                )
                return None
            os.replace(tmp, target)  # atomic: concurrent processes see either nothing or a whole file
        except OSError as exc:
            logger.warning(
                "cannot build the fused DCN kernel in %s (%s); using the pure-PyTorch path",
                target.parent,
                exc,
            )
            return None
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        logger.warning("cannot load %s (%s); using the pure-PyTorch path", target, exc)
        return None
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    signatures = {
        "dcn_im2col_f32": [ptr] * 4 + [i64] * 17,
        "dcn_flow_guided_im2col_f32": [ptr] * 4 + [ctypes.c_float, ptr] + [i64] * 13,
    }
    for name, argtypes in signatures.items():
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = argtypes
    return lib
