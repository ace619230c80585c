"""The CPU kernel loader: prebuilt variants, just-in-time fallback, and every way a build can fail.

Real compiler, real files: the loader is pointed at an empty (or doctored) prebuilt folder and a
temporary cache, with ``$CC`` set to gcc or to small scripts that fail, hang or count their runs.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from basicvsr_archival.models.common import flow_warp
from basicvsr_archival.models.ops import build_kernels, cpu_kernel
from basicvsr_archival.models.ops.cpu_kernel import CpuKernelWarning

pytestmark = pytest.mark.kernels
GCC = shutil.which("gcc") or shutil.which("cc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="no C compiler to test just-in-time builds with")


@pytest.fixture
def loader(tmp_path, monkeypatch):
    """``cpu_kernel`` with an empty prebuilt folder and a fresh cache; caches cleared before and after."""
    lib_dir, cache = tmp_path / "lib", tmp_path / "cache"
    lib_dir.mkdir()
    monkeypatch.setattr(cpu_kernel, "LIB_DIR", lib_dir)
    monkeypatch.setenv("BASICVSR_CACHE_DIR", str(cache))
    monkeypatch.delenv("CC", raising=False)
    cpu_kernel.clear_caches()
    yield cpu_kernel
    cpu_kernel.clear_caches()


def _script(path: Path, body: str) -> str:
    """Write an executable shell script and return its path."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _load_counting_warnings(fn):
    """Call ``fn`` twice; return its first result and the CpuKernelWarning messages both calls gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = fn()
        fn.cache_clear()  # a second load in the same process must not warn again
        fn()
    return first, [str(w.message) for w in caught if issubclass(w.category, CpuKernelWarning)]


def _cache_files(tmp_path: Path) -> list[str]:
    """Names of everything in the kernel cache folder (empty list if it does not exist)."""
    folder = tmp_path / "cache" / "kernels"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _installed_record(name: str, variant: str) -> dict | None:
    """The build record of the package's install-time library ``name`` in ``variant`` (None if absent)."""
    path = build_kernels.LIB_DIR / build_kernels.prebuilt_name(name, variant)
    return json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").is_file() else None


def _warp_max_err() -> float:
    """Max |flow_warp(channels-last, C kernel) - grid_sample| on a small case (checks the kernel runs)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 9, 11, generator=gen)
    flow = torch.randn(1, 9, 11, 2, generator=gen) * 2
    with torch.inference_mode():
        got = flow_warp(x.contiguous(memory_format=torch.channels_last), flow)
        ref = flow_warp(x, flow)
    return (got - ref).abs().max().item()


def test_variant_choice_and_flags_are_fixed():
    v3 = "flags\t\t: fpu sse2 avx avx2 bmi1 bmi2 f16c fma abm movbe xsave\n"
    assert build_kernels.choose_variant(v3, "x86_64") == "x86-64-v3"
    assert build_kernels.choose_variant(v3.replace(" fma", ""), "x86_64") == "portable"
    assert build_kernels.choose_variant(v3, "aarch64") == "portable"
    assert build_kernels.variants_for("aarch64") == ["portable"]
    assert build_kernels.variants_for("x86_64") == ["x86-64-v3", "portable"]
    for name in build_kernels.SOURCES:
        v3_flags, portable = build_kernels.flags(name, "x86-64-v3"), build_kernels.flags(name, "portable")
        assert "-march=x86-64-v3" in v3_flags and "-march=x86-64" in portable
        assert not any("native" in f for f in v3_flags + portable)
    assert "-ffp-contract=fast" in build_kernels.flags("winograd_cpu", "portable")
    with pytest.raises(ValueError, match="x86-64 machine"):
        build_kernels.flags("dcn_cpu", "x86-64-v3", machine="aarch64")


def test_prebuilt_kernels_load_and_record_their_variant(monkeypatch):
    prebuilt = [cpu_kernel.LIB_DIR / build_kernels.prebuilt_name(n, cpu_kernel.cpu_variant()) for n in
                build_kernels.SOURCES]  # fmt: skip
    if not all(p.is_file() for p in prebuilt):
        pytest.skip(f"no prebuilt kernels in {cpu_kernel.LIB_DIR}: install the package (pip install -e .)")
    monkeypatch.setenv("CC", "/nonexistent/cc")  # a just-in-time build would fail: prebuilt only
    cpu_kernel.clear_caches()
    try:
        assert cpu_kernel.kernel_variant() == build_kernels.choose_variant()
        info = cpu_kernel.kernel_info()
        assert info["source"] == "prebuilt" and sorted(info["paths"].values()) == sorted(map(str, prebuilt))
        assert _warp_max_err() < 1e-5
        # the portable variant was built too and computes the same numbers
        monkeypatch.setattr(cpu_kernel, "cpu_variant", lambda: "portable")
        cpu_kernel.clear_caches()
        assert cpu_kernel.load_cpu_kernel() is not None
        assert cpu_kernel.kernel_info()["kernels"]["dcn_cpu"]["path"].endswith("dcn_cpu.portable.so")
        assert _warp_max_err() < 1e-5
    finally:
        cpu_kernel.clear_caches()


@needs_gcc
def test_jit_build_when_prebuilt_absent_or_stale(loader, tmp_path):
    lib = loader.load_cpu_kernel()
    assert lib is not None and loader.load_winograd_kernel() is not None
    info = loader.kernel_info()
    assert info["source"] == "jit" and info["variant"] == loader.cpu_variant()
    path = Path(info["paths"]["dcn_cpu"])
    assert path.parent == tmp_path / "cache" / "kernels" and f".{loader.cpu_variant()}." in path.name
    assert json.loads(path.with_suffix(".json").read_text())["flags"] == build_kernels.flags(
        "dcn_cpu", loader.cpu_variant()
    )
    assert not [n for n in _cache_files(tmp_path) if n.endswith((".tmp", ".lock"))]
    assert _warp_max_err() < 1e-5
    # same variant and compiler as the install-time build: the same bytes (no path, no -march=native)
    record = json.loads(path.with_suffix(".json").read_text())
    installed = _installed_record("dcn_cpu", loader.cpu_variant())
    if installed is not None and installed["compiler"] == record["compiler"]:
        assert installed["lib_sha256"] == record["lib_sha256"] == _sha256(path)
    # a prebuilt library whose source changed since it was built is ignored: the cached build is used
    stale = loader.LIB_DIR / build_kernels.prebuilt_name("dcn_cpu", loader.cpu_variant())
    shutil.copy(path, stale)
    stale.with_suffix(".json").write_text(json.dumps({**record, "source_sha256": "0" * 64}))
    mtime = path.stat().st_mtime_ns
    loader.clear_caches()
    assert loader.load_cpu_kernel() is not None
    assert loader.kernel_info()["paths"]["dcn_cpu"] == str(path) and path.stat().st_mtime_ns == mtime
    # with the right record it is taken as prebuilt
    stale.with_suffix(".json").write_text(json.dumps(record))
    loader.clear_caches()
    assert loader.load_cpu_kernel() is not None
    assert loader.kernel_info()["kernels"]["dcn_cpu"]["source"] == "prebuilt"


@needs_gcc
def test_jit_build_removes_temp_files_a_killed_build_left(loader, tmp_path):
    target = loader._jit_target("dcn_cpu", loader.cpu_variant(), build_kernels.find_compiler(None))
    target.parent.mkdir(parents=True)
    leftover = target.parent / f".{target.name}.killed.tmp"
    leftover.write_bytes(b"half a library")
    assert loader.load_cpu_kernel() is not None
    assert not leftover.exists() and _cache_files(tmp_path) == sorted([target.name, f"{target.stem}.json"])


@pytest.mark.parametrize("how", ["CC not found", "no compiler on PATH"])
def test_no_compiler_gives_none_and_one_warning(loader, tmp_path, monkeypatch, how):
    if how == "CC not found":
        monkeypatch.setenv("CC", str(tmp_path / "no" / "gcc"))
    else:
        monkeypatch.setenv("PATH", str(tmp_path))
    lib, messages = _load_counting_warnings(loader.load_cpu_kernel)
    assert lib is None and loader.kernel_variant() is None
    assert len(messages) == 1 and "dcn_cpu" in messages[0] and "no C compiler" in messages[0]
    assert "2x slower" in messages[0]
    assert loader.kernel_info()["kernels"]["dcn_cpu"]["error"].startswith("no C compiler")


def test_failed_build_gives_none_and_leaves_no_temp_files(loader, tmp_path, monkeypatch):
    monkeypatch.setenv("CC", _script(tmp_path / "bad-cc", 'echo "boom: cannot compile" >&2\nexit 1\n'))
    lib, messages = _load_counting_warnings(loader.load_winograd_kernel)
    assert lib is None
    assert len(messages) == 1 and "exited with status 1" in messages[0] and "boom" in messages[0]
    assert _cache_files(tmp_path) == []  # no half-written library, no temp file, no lock file


def test_compiler_timeout_kills_the_build_and_cleans_up(loader, tmp_path, monkeypatch):
    pid_file = tmp_path / "sleeper.pid"
    body = f"sleep 60 &\necho $! > {pid_file}\nwait\n"  # a child of the compiler, as cc1 is of gcc
    monkeypatch.setenv("CC", _script(tmp_path / "slow-cc", body))
    monkeypatch.setattr(loader, "BUILD_TIMEOUT_S", 1.0)
    start = time.monotonic()
    lib, messages = _load_counting_warnings(loader.load_cpu_kernel)
    assert lib is None and time.monotonic() - start < 10
    assert len(messages) == 1 and "did not finish within 1 s" in messages[0]
    assert _cache_files(tmp_path) == []
    stat = Path(f"/proc/{pid_file.read_text().strip()}/stat")  # the whole process group was killed
    deadline = time.monotonic() + 5
    while stat.exists() and stat.read_text().split(")")[1].split()[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not stat.exists() or stat.read_text().split(")")[1].split()[0] == "Z"


@needs_gcc
def test_unwritable_cache_gives_none_and_a_warning(loader, tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BASICVSR_CACHE_DIR", str(blocker))  # the cache would be a/_file/kernels
    lib, messages = _load_counting_warnings(loader.load_cpu_kernel)
    assert lib is None and len(messages) == 1
    assert "NotADirectoryError" in messages[0] or "FileExistsError" in messages[0]
    assert blocker.read_text() == "not a folder"


_CHILD = """
import json, sys
from pathlib import Path
from basicvsr_archival.models.ops import cpu_kernel
cpu_kernel.LIB_DIR = Path(sys.argv[1])
lib = cpu_kernel.load_cpu_kernel()
print(json.dumps({"loaded": lib is not None, "info": cpu_kernel.kernel_info()["kernels"]["dcn_cpu"]}))
"""


@needs_gcc
def test_two_processes_build_once_and_both_load(tmp_path, repo_root):
    log = tmp_path / "cc.log"
    # logs each compile, then holds it for a second so that the other process arrives meanwhile
    body = f'case "$*" in *dcn_cpu.c*) echo "$$" >> {log}; sleep 1;; esac\nexec {GCC} "$@"\n'
    env = {**os.environ, "CC": _script(tmp_path / "counting-cc", body)}
    env["BASICVSR_CACHE_DIR"] = str(tmp_path / "cache")
    (tmp_path / "lib").mkdir()
    argv = [sys.executable, "-c", _CHILD, str(tmp_path / "lib")]
    procs = [
        subprocess.Popen(argv, cwd=repo_root, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert all(r["loaded"] and r["info"]["source"] == "jit" for r in results)
    assert results[0]["info"]["path"] == results[1]["info"]["path"]
    assert len(log.read_text().splitlines()) == 1  # the compiler ran once
    assert not [n for n in _cache_files(tmp_path) if n.endswith((".tmp", ".lock"))]


def test_install_build_failure_does_not_fail_the_install(tmp_path, repo_root):
    # setup.py's build_py with a compiler that fails: the Python files are built, the kernels are not
    env = {**os.environ, "CC": _script(tmp_path / "bad-cc", "exit 1\n")}
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "build")],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: building the CPU kernel dcn_cpu.x86-64-v3.so failed" in done.stdout or (
        "warning: building the CPU kernel dcn_cpu.portable.so failed" in done.stdout
    )
    ops = tmp_path / "build" / "basicvsr_archival" / "models" / "ops"
    assert (ops / "cpu_kernel.py").is_file() and not list((ops / "_lib").glob("*"))


@pytest.mark.parametrize("ci", [None, "true"])
def test_ci_run_fails_when_a_kernel_test_skips(tmp_path, repo_root, ci):
    # tests/conftest.py's hook: a skipped `kernels` test fails the whole run under CI=true only
    shutil.copy(repo_root / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_k.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.kernels\ndef test_kernel():\n    pytest.skip('kernel missing')\n\n"
        "def test_other():\n    pytest.skip('not a kernel test')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci else {})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "2 skipped" in done.stdout and "test_k.py::test_kernel" in done.stdout
    assert done.returncode == (1 if ci else 0), done.stdout[-2000:]
