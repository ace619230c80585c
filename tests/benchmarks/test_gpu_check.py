"""benchmarks/gpu_check.sh: the CPU dry run prints every figure; the packed dependencies unpack and import."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _figure(text: str, pattern: str) -> float:
    """The number after the first line matching ``pattern`` (a regex) in the dry run's output."""
    match = re.search(pattern + r"\s+(-?[0-9.]+(?:e[-+]?\d+)?|inf)", text)
    assert match, f"no line matching {pattern!r} in:\n{text}"
    return float(match.group(1))


def test_dry_run_prints_the_figures():
    """``--dry-run``: the CUDA tests skip, then the checks run on the CPU at tiny sizes and print numbers."""
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry-run", "--compile-timeout", "5"],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "skipped" in out and "needs a CUDA device" in out  # the cuda-marked tests ran (and skipped)
    assert _figure(out, r"network c8n1 cpu \(torch backend\) vs cpu fp32, 3x16x24: max abs diff") <= 1e-4
    assert _figure(out, r"network c16n1 cpu \(torch backend\) vs cpu fp32, 3x16x24: max abs diff") <= 1e-4
    assert _figure(out, r"dcn pure cpu vs cpu pure, in 32 out 16 g16 16x24: max abs diff") <= 1e-4
    for precision in ("fp32", "tf32", "fp16", "bf16"):
        assert _figure(out, rf"speed {precision} 24x32 -> 96x128, 3 frames") > 0
    assert _figure(out, r"psnr bf16 vs fp32") > 30
    compile_line = next(line for line in out.splitlines() if line.startswith("compile fp32 24x32"))
    assert "skipped (compiling took over 5 s)" in compile_line or "frames/s" in out.split(compile_line)[1]
    assert _figure(out, r"gpu_check total") > 0
    assert "tests exit 0, checks exit 0" in out


def test_prepare_packs_what_a_bare_python_needs(tmp_path):
    """``--prepare`` packs the pure-Python dependencies; ``--unpack`` in a Python without site-packages
    extracts them all, plus stand-ins for PyAV / OpenCV that fail on use."""
    house, site = tmp_path / "house", tmp_path / "site"
    script = str(REPO / "benchmarks" / "gpu_check.py")
    subprocess.run([sys.executable, script, "--prepare", "--house", str(house)], check=True, timeout=120)
    names = zipfile.ZipFile(house / "deps.zip").namelist()
    assert "mmengine/config/config.py" in names and "yapf/__init__.py" in names
    assert not any("__pycache__" in n or n.endswith(".so") for n in names)
    assert sum(f.stat().st_size for f in house.rglob("*") if f.is_file()) < 16 * 2**20
    bare = [sys.executable, "-S"]  # no site-packages: nothing of the project's dependencies imports
    subprocess.run([*bare, script, "--unpack", str(site), "--house", str(house)], check=True, timeout=120)
    assert (site / "mmengine" / "__init__.py").is_file() and (site / "pytest" / "__init__.py").is_file()
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = (
        "import addict, termcolor, yapf, platformdirs, yaml, rich, av, cv2\n"
        "try:\n    av.open('x.mp4')\nexcept ModuleNotFoundError as exc:\n    print('stand-in:', exc)\n"
    )
    done = subprocess.run([*bare, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "stand-in: av is not installed on this machine: the GPU check skips video I/O" in done.stdout
