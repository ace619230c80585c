"""bench_inference.py --compare: three interleaved variants, one of them a temporary worktree of REF."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _worktrees() -> str:
    """``git worktree list`` of the repository."""
    return subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout


def test_compare_with_head_times_the_same_network(tmp_path):
    """REF=HEAD: the auto variant computes REF's output exactly; ratios are printed; the worktree goes."""
    out = tmp_path / "cmp.json"
    argv = [sys.executable, "benchmarks/bench_inference.py", "--compare", "HEAD", "--rounds", "2"]
    argv += ["--mid-channels", "8", "--num-blocks", "1", "--height", "16", "--width", "24", "--frames", "2"]
    done = subprocess.run([*argv, "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())["compare"]
    assert result["ref"].startswith("HEAD (") and result["rounds"] == 2
    assert result["auto"]["s_per_frame"] > 0 and result["ref HEAD"]["s_per_frame"] > 0
    assert result["auto"]["max_abs_diff_vs_ref"] <= 1e-4  # the same network, weights and input
    torch_row = result["torch"]  # unavailable before init_model had a backend argument
    assert "unavailable" in torch_row or torch_row["max_abs_diff_vs_ref"] <= 1e-4
    assert result["speed_auto_over_ref"] > 0 and "auto / ref   speed" in done.stdout
    assert "bench_ref_" not in _worktrees()
