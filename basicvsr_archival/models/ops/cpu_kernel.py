"""Build and load the CPU kernels: ``dcn_cpu.c`` (deformable convolutions), ``winograd_cpu.c`` (3x3 convs).

Each kernel is plain C with no Python or torch headers, so the system C compiler builds it
in about a second on first use; each shared object is cached under
``$BASICVSR_CACHE_DIR`` (default ``~/.cache/basicvsr_archival``), keyed by the source, the
compiler flags and the CPU, and loaded with ``ctypes``.  Where no compiler is found the
loader returns ``None``: the deformable convolution then uses its pure-PyTorch path and the
convolutions their NNPACK / oneDNN paths.
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
_WINOGRAD_SOURCE = Path(__file__).with_name("winograd_cpu.c")
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


def _build_and_load(
    source_path: Path, flags: list[str], signatures: dict[str, tuple[list, object]], what: str
) -> ctypes.CDLL | None:
    """Compile ``source_path`` with ``flags`` (cached on disk), load it and set the ctypes signatures.

    ``signatures`` maps function names to ``(argtypes, restype)``. ``None`` (with a log line naming
    ``what`` falls back to the pure-PyTorch path) when no compiler, a failed build or load.
    """
    if platform.system() == "Windows":
        return None
    cc = _compiler()
    if cc is None:
        logger.info("no C compiler found: %s uses the pure-PyTorch path", what)
        return None
    source = source_path.read_bytes()
    key = hashlib.sha256(
        source + " ".join([cc, *flags]).encode() + _cpu_signature().encode() + platform.machine().encode()
    ).hexdigest()[:16]
    target = _cache_dir() / f"{source_path.stem}_{key}.so"
    if not target.is_file():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
            os.close(fd)
            proc = subprocess.run(
                [cc, *flags, str(source_path), "-o", tmp, "-lm"], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                os.unlink(tmp)
                logger.warning(
                    "building the %s kernel failed (%s); using the pure-PyTorch path",
                    what,
                    proc.stderr[-500:],
                )
                return None
            os.replace(tmp, target)  # atomic: concurrent processes see either nothing or a whole file
        except OSError as exc:
            logger.warning(
                "cannot build the %s kernel in %s (%s); using the pure-PyTorch path", what, target.parent, exc
            )
            return None
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        logger.warning("cannot load %s (%s); using the pure-PyTorch path", target, exc)
        return None
    for name, (argtypes, restype) in signatures.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


_PTR, _I64 = ctypes.c_void_p, ctypes.c_int64


@functools.lru_cache(maxsize=1)
def load_cpu_kernel() -> ctypes.CDLL | None:
    """Compile (once, cached on disk) and load ``dcn_cpu.c``; ``None`` when that is impossible."""
    signatures = {
        "dcn_im2col_f32": ([_PTR] * 4 + [_I64] * 17, None),
        "dcn_flow_guided_im2col_f32": ([_PTR] * 4 + [ctypes.c_float, _PTR] + [_I64] * 13, None),
        "flow_warp_f32": ([_PTR] * 3 + [_I64] * 8, None),
    }
    return _build_and_load(_SOURCE, _FLAGS, signatures, "fused DCN")


@functools.lru_cache(maxsize=1)
def load_winograd_kernel() -> ctypes.CDLL | None:
    """Compile (once, cached on disk) and load ``winograd_cpu.c``; ``None`` when that is impossible."""
    signatures = {
        "wino_scratch_floats": ([_I64] * 4, _I64),
        "wino_f32": (
            [_PTR, _PTR, _I64] + [_PTR] * 4 + [_I64] * 8 + [ctypes.c_float, _I64, _I64, _PTR, _I64, _I64],
            None,
        ),
    }
    # the GEMM's multiply-adds must contract to FMAs (-std=c11 alone turns contraction off)
    return _build_and_load(
        _WINOGRAD_SOURCE, [*_FLAGS, "-ffp-contract=fast"], signatures, "Winograd convolution"
    )
