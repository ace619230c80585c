"""Build the CPU kernels (``dcn_cpu.c``, ``winograd_cpu.c``) for fixed instruction-set variants.

Two variants, so that the same variant gives the same bits on every machine (never ``-march=native``):

* ``x86-64-v3``: ``-march=x86-64-v3`` (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE), on x86-64 only;
* ``portable``: ``-march=x86-64`` on x86-64 (SSE2), no ``-march`` elsewhere.

``setup.py`` loads this file by path at install time (the build environment has no torch), so it
imports the standard library only. The package build writes ``_lib/<kernel>.<variant>.so`` next to
this file, each with a ``.json`` record (source hash, flags, compiler); ``cpu_kernel.py`` loads them
and falls back to the same build, just in time, when one is missing or stale.

``python -m basicvsr_archival.models.ops.build_kernels [--out DIR] [--variant V]`` rebuilds them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIB_DIR = HERE / "_lib"
SOURCES = {name: HERE / f"{name}.c" for name in ("dcn_cpu", "winograd_cpu")}
# -fno-trapping-math lets the rounding in the DCN kernel's polynomial exp vectorise; NaN semantics are kept
COMMON_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC", "-std=c11"]
# the Winograd GEMM's multiply-adds must contract to FMAs (-std=c11 alone turns contraction off)
EXTRA_FLAGS = {"dcn_cpu": [], "winograd_cpu": ["-ffp-contract=fast"]}
VARIANTS = ("x86-64-v3", "portable")
# /proc/cpuinfo flags that x86-64-v3 code may use (abm = LZCNT)
V3_CPU_FLAGS = frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"})
INSTALL_TIMEOUT_S = 300.0


class BuildError(RuntimeError):
    """A kernel could not be built; the message says why (compiler output tail, timeout, ...)."""


def is_x86_64(machine: str | None = None) -> bool:
    """Whether ``machine`` (default: this one) is x86-64."""
    return (machine or platform.machine()).lower() in ("x86_64", "amd64")


def variants_for(machine: str | None = None) -> list[str]:
    """The variants built on ``machine``: both on x86-64, only ``portable`` elsewhere."""
    return list(VARIANTS) if is_x86_64(machine) else ["portable"]


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags listed in a ``/proc/cpuinfo`` text (first ``flags`` line)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def choose_variant(cpuinfo: str | None = None, machine: str | None = None) -> str:
    """``x86-64-v3`` on an x86-64 CPU with all of :data:`V3_CPU_FLAGS`, else ``portable``."""
    if not is_x86_64(machine):
        return "portable"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "portable"
    return "x86-64-v3" if cpu_flags(cpuinfo) >= V3_CPU_FLAGS else "portable"


def flags(name: str, variant: str, machine: str | None = None) -> list[str]:
    """Compiler flags of kernel ``name`` in ``variant``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown kernel variant {variant!r} (expected one of {', '.join(VARIANTS)})")
    if variant == "x86-64-v3":
        if not is_x86_64(machine):
            raise ValueError("the x86-64-v3 kernel variant needs an x86-64 machine")
        arch = ["-march=x86-64-v3", "-mtune=generic"]
    else:
        arch = ["-march=x86-64", "-mtune=generic"] if is_x86_64(machine) else []
    return [*COMMON_FLAGS, *arch, *EXTRA_FLAGS[name]]


def find_compiler(cc: str | None = None) -> list[str] | None:
    """The compiler command: ``cc`` (a ``$CC`` value, may hold arguments) if given, else cc/gcc/clang.

    An explicit ``cc`` that is not found gives ``None`` (no silent switch to another compiler).
    """
    if cc:
        argv = shlex.split(cc)
        path = shutil.which(argv[0]) if argv else None
        return [os.path.abspath(path), *argv[1:]] if path else None
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [os.path.abspath(path)]
    return None


def source_sha256(name: str) -> str:
    """SHA-256 of kernel ``name``'s C source."""
    return hashlib.sha256(SOURCES[name].read_bytes()).hexdigest()


def compiler_version(cc: list[str], timeout: float = 10.0) -> str:
    """First line of ``cc --version`` ('' if it cannot be run)."""
    try:
        done = subprocess.run(
            [*cc, "--version"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""


def _run_compiler(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``argv`` in the sources' folder, in its own process group; on timeout kill the group (cc1/as/ld).

    The sources are named relative to that folder so that no install path ends up in the library:
    the same compiler and flags give the same bytes wherever the package lives.
    """
    pipe = subprocess.PIPE
    proc = subprocess.Popen(argv, stdout=pipe, stderr=pipe, text=True, start_new_session=True, cwd=HERE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _write_json_atomic(path: Path, record: dict) -> None:
    """Write ``record`` to ``path`` through a temporary file in the same folder and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def remove_stale_temps(target: Path) -> None:
    """Remove temporary files a killed build of ``target`` left behind (call with the build lock held)."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def build(name: str, variant: str, target: Path, cc: list[str], timeout: float) -> dict:
    """Compile kernel ``name`` in ``variant`` into ``target`` (atomic rename) and write ``target``'s record.

    The record (``target`` with suffix ``.json``) holds the source hash, flags, compiler and the
    library's hash. Raises :class:`BuildError` on a failed or timed-out compile, ``OSError`` on an
    unwritable folder; no temporary file is left behind either way.
    """
    argv_flags, target = flags(name, variant), target.absolute()  # the compiler runs in HERE
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        try:
            done = _run_compiler([*cc, *argv_flags, SOURCES[name].name, "-o", tmp, "-lm"], timeout)
        except subprocess.TimeoutExpired:
            raise BuildError(f"{' '.join(cc)} did not finish within {timeout:g} s") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-500:]
            raise BuildError(f"{' '.join(cc)} exited with status {done.returncode}: {tail}")
        os.chmod(tmp, 0o755)  # readable by every user of a shared install or cache
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    record = {
        "kernel": name,
        "variant": variant,
        "source_sha256": source_sha256(name),
        "flags": argv_flags,
        "compiler": " ".join(cc),
        "compiler_version": compiler_version(cc),
        "lib_sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
    }
    _write_json_atomic(target.with_suffix(".json"), record)
    return record


def prebuilt_name(name: str, variant: str) -> str:
    """File name of a kernel built at install time: ``dcn_cpu.x86-64-v3.so``."""
    return f"{name}.{variant}.so"


def build_all(
    out_dir: Path = LIB_DIR, cc: str | None = None, variants: list[str] | None = None, log=print
) -> bool:
    """Build every kernel in every variant of this machine into ``out_dir``; True if all built.

    Never raises for a failed build: each failure is reported through ``log`` and the runtime
    builds the missing kernel just in time instead.
    """
    compiler = find_compiler(cc)
    if compiler is None:
        log(f"warning: no C compiler found ({'CC=' + cc if cc else 'cc, gcc, clang'}): CPU kernels not built")
        return False
    ok = True
    out_dir.mkdir(parents=True, exist_ok=True)
    for variant in variants or variants_for():
        for name in SOURCES:
            target = out_dir / prebuilt_name(name, variant)
            try:
                remove_stale_temps(target)
                build(name, variant, target, compiler, INSTALL_TIMEOUT_S)
                log(f"built {target}")
            except (BuildError, OSError, ValueError) as exc:
                ok = False
                log(f"warning: building the CPU kernel {target.name} failed: {exc}")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Command line: rebuild the kernels (exit status 1 if any failed)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=LIB_DIR, help=f"output folder (default {LIB_DIR})")
    parser.add_argument("--variant", action="append", choices=VARIANTS, help="variant to build (repeatable)")
    args = parser.parse_args(argv)
    from basicvsr_archival.utils import env

    return 0 if build_all(args.out, env.read("CC"), args.variant) else 1


if __name__ == "__main__":
    sys.exit(main())
