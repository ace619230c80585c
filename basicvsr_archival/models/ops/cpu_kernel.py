"""Load the CPU kernels: ``dcn_cpu.c`` (deformable convolutions), ``winograd_cpu.c`` (3x3 convolutions).

The package build compiles each kernel for two fixed instruction-set variants (``build_kernels.py``:
``x86-64-v3`` and ``portable``, never ``-march=native``) into ``_lib/``. At run time the variant is
chosen from the CPU's flags (:func:`cpu_variant`), the prebuilt library of that variant is loaded
with ``ctypes``, and where it is missing or stale (its source changed) that same variant is built
just in time into ``$BASICVSR_CACHE_DIR/kernels`` (default ``~/.cache/basicvsr_archival``): one
process compiles under a file lock while the others wait, the compiler has a timeout, and no
temporary file stays behind. So a given variant gives the same bits on every machine.

When neither works the loaders return ``None`` with one warning per kernel and process: the
deformable convolutions then run their pure-PyTorch path and the convolutions NNPACK / oneDNN,
about 2x slower. :func:`kernel_variant` and :func:`kernel_info` say what was loaded, for manifests.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any

from basicvsr_archival.utils import env

__all__ = [
    "CpuKernelWarning",
    "clear_caches",
    "cpu_variant",
    "kernel_info",
    "kernel_variant",
    "load_cpu_kernel",
    "load_winograd_kernel",
]

# where the package build put the prebuilt libraries (tests point it at an empty folder)
LIB_DIR: Path = Path(__file__).resolve().with_name("_lib")
# limit on one just-in-time compile, and on waiting for another process's compile
BUILD_TIMEOUT_S: float = 120.0

_PTR, _I64 = ctypes.c_void_p, ctypes.c_int64
_SIGNATURES: dict[str, dict[str, tuple[list, Any]]] = {
    "dcn_cpu": {
        "dcn_im2col_f32": ([_PTR] * 4 + [_I64] * 17, None),
        "dcn_flow_guided_im2col_f32": ([_PTR] * 4 + [ctypes.c_float, _PTR] + [_I64] * 13, None),
        "flow_warp_f32": ([_PTR] * 3 + [_I64] * 8, None),
    },
    "winograd_cpu": {
        "wino_scratch_floats": ([_I64] * 4, _I64),
        "wino_f32": (
            [_PTR, _PTR, _I64] + [_PTR] * 4 + [_I64] * 8 + [ctypes.c_float, _I64, _I64, _PTR, _I64, _I64],
            None,
        ),
    },
}
_FALLBACK = {
    "dcn_cpu": "the deformable convolutions and flow warps run their pure-PyTorch path",
    "winograd_cpu": "the 3x3 convolutions run NNPACK / oneDNN instead of the Winograd kernel",
}
_INFO: dict[str, dict[str, Any]] = {}  # per kernel: what the last load found
_WARNED: set[str] = set()


class CpuKernelWarning(RuntimeWarning):
    """A CPU kernel is missing: the slower pure-PyTorch / oneDNN path runs instead."""


def _builder():
    """The ``build_kernels`` module, imported on use (so that ``python -m`` can run it cleanly)."""
    from . import build_kernels

    return build_kernels


@functools.lru_cache(maxsize=1)
def _detect_variant() -> str:
    """:func:`build_kernels.choose_variant` for this machine, once per process."""
    return _builder().choose_variant()


def cpu_variant() -> str:
    """The kernel variant this CPU runs: ``'x86-64-v3'`` (AVX2, FMA, BMI2, ...) or ``'portable'``."""
    return _detect_variant()


def _cache_dir() -> Path:
    """Folder holding just-in-time built kernels."""
    root = env.read("BASICVSR_CACHE_DIR") or Path.home() / ".cache" / "basicvsr_archival"
    return Path(root) / "kernels"


def _record(path: Path) -> dict | None:
    """The build record (``.json``) next to a kernel library, or None if absent or unreadable."""
    try:
        return json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None


def _prebuilt(name: str, variant: str) -> Path | None:
    """The install-time library of ``name`` in ``variant``, if present and built from the current source."""
    build_kernels = _builder()
    path = LIB_DIR / build_kernels.prebuilt_name(name, variant)
    record = _record(path)
    if not path.is_file() or record is None:
        return None
    fresh = record.get("source_sha256") == build_kernels.source_sha256(name)
    return path if fresh and record.get("flags") == build_kernels.flags(name, variant) else None


def _jit_target(name: str, variant: str, cc: list[str]) -> Path:
    """Cache path of the just-in-time build, keyed by the source, the flags and the compiler file."""
    build_kernels = _builder()
    stat = Path(cc[0]).stat()
    parts = [build_kernels.source_sha256(name), *build_kernels.flags(name, variant), *cc]
    key = "\n".join([*parts, str(stat.st_size), str(stat.st_mtime_ns)])
    return _cache_dir() / f"{name}.{variant}.{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def _wait_lock(stack: contextlib.ExitStack, lock_path: Path, wait_s: float) -> None:
    """Enter the exclusive lock on ``lock_path``, waiting up to ``wait_s`` for another process's build."""
    from basicvsr_archival.utils.lock import LockHeldError, exclusive_lock  # fcntl: POSIX only

    deadline = time.monotonic() + wait_s
    while True:
        try:
            stack.enter_context(exclusive_lock(lock_path, lock_path.with_suffix("")))
            return
        except LockHeldError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _jit_build(name: str, variant: str) -> Path:
    """Build ``name`` in ``variant`` into the cache (once across processes); return the library path.

    Raises ``BuildError`` / ``OSError`` / ``LockHeldError`` with the reason when that fails.
    """
    build_kernels = _builder()
    cc = build_kernels.find_compiler(env.read("CC"))
    if cc is None:
        cc_env = env.read("CC")
        raise build_kernels.BuildError(f"no C compiler ({'CC=' + cc_env if cc_env else 'cc, gcc, clang'})")
    target = _jit_target(name, variant, cc)
    if target.is_file() and _record(target) is not None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        _wait_lock(stack, target.parent / f"{target.name}.lock", BUILD_TIMEOUT_S + 30)
        if not (target.is_file() and _record(target) is not None):  # another process may have built it
            build_kernels.remove_stale_temps(target)
            build_kernels.build(name, variant, target, cc, BUILD_TIMEOUT_S)
    return target


def _warn_missing(name: str, variant: str, reason: str) -> None:
    """One visible warning per kernel and process that ``name`` is missing and the slower path runs."""
    if name in _WARNED:
        return
    _WARNED.add(name)
    warnings.warn(
        f"basicvsr_archival: CPU kernel {name} ({variant}) is missing: {reason}. "
        f"{_FALLBACK[name]}, about 2x slower. Reinstall with a C compiler (pip install -e .) "
        "or set CC / BASICVSR_CACHE_DIR.",
        CpuKernelWarning,
        stacklevel=4,
    )


def _load(name: str) -> ctypes.CDLL | None:
    """Load kernel ``name`` (prebuilt, else built just in time) and set its ctypes signatures."""
    build_kernels = _builder()
    variant = cpu_variant()
    info: dict[str, Any] = {"variant": None, "source": None, "path": None, "error": None}
    _INFO[name] = info
    if platform.system() == "Windows":
        info["error"] = "the CPU kernels are not built on Windows"
    else:
        try:
            path, source = _prebuilt(name, variant), "prebuilt"
            if path is None:
                path, source = _jit_build(name, variant), "jit"
            lib = ctypes.CDLL(str(path))
            for fn_name, (argtypes, restype) in _SIGNATURES[name].items():
                fn = getattr(lib, fn_name)
                fn.argtypes, fn.restype = argtypes, restype
        except (build_kernels.BuildError, OSError, AttributeError) as exc:
            info["error"] = f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) else str(exc)
        else:
            record = _record(path) or {}
            info.update(variant=variant, source=source, path=str(path))
            info.update(compiler_version=record.get("compiler_version"), lib_sha256=record.get("lib_sha256"))
            return lib
    _warn_missing(name, variant, info["error"])
    return None


@functools.lru_cache(maxsize=1)
def load_cpu_kernel() -> ctypes.CDLL | None:
    """The ``dcn_cpu.c`` library (DCN im2col, flow warp); ``None`` (with a warning) when unavailable."""
    return _load("dcn_cpu")


@functools.lru_cache(maxsize=1)
def load_winograd_kernel() -> ctypes.CDLL | None:
    """The ``winograd_cpu.c`` library (3x3 convolutions); ``None`` (with a warning) when unavailable."""
    return _load("winograd_cpu")


def kernel_variant() -> str | None:
    """Instruction-set variant of the loaded kernels ('x86-64-v3' or 'portable'); None unless both load."""
    if load_cpu_kernel() is None or load_winograd_kernel() is None:
        return None
    return cpu_variant()


def kernel_info() -> dict[str, Any]:
    """What was loaded, for manifests: variant, source ('prebuilt'/'jit'), paths, per-kernel details."""
    variant = kernel_variant()
    load_cpu_kernel(), load_winograd_kernel()  # both tried, even where the first is missing
    kernels = {name: dict(_INFO[name]) for name in _SIGNATURES}
    sources = {k["source"] for k in kernels.values() if k["source"]}
    return {
        "variant": variant,
        "cpu_variant": cpu_variant(),
        "source": sources.pop() if len(sources) == 1 else ("mixed" if sources else None),
        "paths": {name: k["path"] for name, k in kernels.items()},
        "kernels": kernels,
    }


def clear_caches() -> None:
    """Forget the loaded kernels and the warnings given (the next call loads again; for tests)."""
    load_cpu_kernel.cache_clear()
    load_winograd_kernel.cache_clear()
    _detect_variant.cache_clear()
    _INFO.clear()
    _WARNED.clear()
