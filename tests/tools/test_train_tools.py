"""tools/train.py, tools/dist_train.sh and tools/test.py on the tiny config with real frames (CPU, gloo)."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from basicvsr_archival.apis import init_model
from basicvsr_archival.registry import MODELS

TINY = "configs/tiny_reds_demo_train.py"


def _load_tool(repo_root: Path, name: str):
    """The tool's module (``tools/<name>.py`` runs its ``main``)."""
    return importlib.import_module(f"basicvsr_archival.tools.{name}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], repo_root: Path, timeout: int = 600) -> str:
    env = dict(os.environ, PORT=str(_free_port()), PYTHONPATH=str(repo_root))
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def test_cfg_options_change_model_and_data_paths(repo_root: Path, reds_demo_dir: Path, tmp_path: Path):
    train = _load_tool(repo_root, "train")
    args = train.parse_args(
        [
            str(repo_root / TINY),
            "--work-dir",
            str(tmp_path),
            "--cfg-options",
            "model.generator.mid_channels=16",
            f"gt_folder={reds_demo_dir}",
        ]
    )
    cfg = train.build_cfg(args)
    assert cfg.work_dir == str(tmp_path) and cfg.launcher == "none"
    assert cfg.train_dataloader.dataset.gt_folder == str(reds_demo_dir)
    assert cfg.val_dataloader.dataset.gt_folder == str(reds_demo_dir)
    model = MODELS.build(cfg.model)
    assert model.generator.mid_channels == 16
    assert model.generator.feat_extract(torch.zeros(1, 3, 8, 8)).shape[1] == 16
    with pytest.raises(FileNotFoundError, match=r"nope\.pth: checkpoint to resume from not found"):
        train.build_cfg(train.parse_args([str(repo_root / TINY), "--resume", str(tmp_path / "nope.pth")]))


def _val_psnr(log: str) -> float:
    return float(re.findall(r"Iter\(val\) \[1/1\]\s+PSNR: ([0-9.]+)", log)[-1])


# Slow by nature (about 1-2 minutes on 2 shared CPU cores): two real torchrun launches of 2 gloo ranks
# (4 iterations, then a resume to 6) plus one evaluation run; each BasicVSR++ step takes seconds on CPU.
def test_dist_train_resume_and_test(repo_root: Path, reds_demo_dir: Path, tmp_path: Path):
    work = tmp_path / "work"
    data = [f"gt_folder={reds_demo_dir}"]
    dist = ["sh", "tools/dist_train.sh", TINY, "2", "--work-dir", str(work)]
    log = _run([*dist, "--cfg-options", *data], repo_root)
    assert "process rank 0 of world_size 2" in log and "process rank 1 of world_size 2" in log
    assert "Distributed training: True" in log and "Iter(train) [4/4]" in log
    for name in ("iter_2.pth", "iter_4.pth", "best_PSNR_iter_4.pth"):
        assert (work / name).is_file(), name
    ckpt4 = torch.load(work / "iter_4.pth", map_location="cpu", weights_only=True)  # SafeCheckpointHook
    assert ckpt4["meta"]["iter"] == 4
    assert all(k.startswith("generator.") and ".module." not in k for k in ckpt4["state_dict"])

    log = _run(
        [*dist, "--resume", str(work / "iter_4.pth"), "--cfg-options", *data, "train_cfg.max_iters=6"],
        repo_root,
    )
    assert "resumed epoch: 0, iter: 4" in log
    assert "Iter(train) [5/6]" in log and "Iter(train) [6/6]" in log and "[1/6]" not in log
    ckpt6 = torch.load(work / "iter_6.pth", map_location="cpu", weights_only=True)
    assert ckpt6["meta"]["iter"] == 6
    steps = [float(s["step"]) for s in ckpt6["optimizer"]["state"].values()]
    assert max(steps) == 6  # Adam state continued from iteration 4 (a fresh optimizer would say 2)
    val_psnr = _val_psnr(log)
    model = init_model(repo_root / TINY, work / "iter_6.pth")  # inference API loads it strictly
    assert model.generator.mid_channels == 8

    out = _run(
        [
            sys.executable,
            "tools/test.py",
            TINY,
            str(work / "iter_6.pth"),
            "--work-dir",
            str(work / "test"),
            "--save-path",
            str(tmp_path / "sr"),
            "--cfg-options",
            *data,
        ],
        repo_root,
    )
    rows = {
        line.split()[0]: line.split()[1:] for line in out.splitlines() if re.match(r"^(clip|mean|reds)", line)
    }
    assert rows["clip"] == ["PSNR", "SSIM"]
    assert float(rows["reds_demo_000/00000016"][0]) == pytest.approx(val_psnr, abs=1e-3)
    assert float(rows["mean"][0]) == pytest.approx(val_psnr, abs=1e-3) and 0 < float(rows["mean"][1]) < 1
    assert len(list((tmp_path / "sr" / "reds_demo_000" / "00000016").glob("*.png"))) == 5


def test_distributed_runs_get_the_cpu_compatible_wrapper(repo_root: Path):
    train = _load_tool(repo_root, "train")
    wrappers = {}
    for option in ("model_wrapper_cfg=None", "model_wrapper_cfg.type=MMSeparateDistributedDataParallel"):
        for launcher in ("none", "pytorch"):
            argv = [str(repo_root / TINY), "--launcher", launcher, "--cfg-options", option]
            wrappers[option, launcher] = train.build_cfg(train.parse_args(argv)).get("model_wrapper_cfg")
    assert wrappers["model_wrapper_cfg=None", "none"] is None  # single process: nothing to wrap
    assert wrappers["model_wrapper_cfg=None", "pytorch"] == dict(
        type="CPUCompatibleDDP", broadcast_buffers=False, find_unused_parameters=False
    )  # what mmengine builds without a model_wrapper_cfg, minus its device_ids on the CPU
    mmagic = "model_wrapper_cfg.type=MMSeparateDistributedDataParallel"
    assert wrappers[mmagic, "none"]["type"] == "MMSeparateDistributedDataParallel"
    assert dict(wrappers[mmagic, "pytorch"]) == dict(
        type="CPUCompatibleSeparateDDP", find_unused_parameters=True
    )


# About 40 s on 2 shared CPU cores: a real torchrun launch of 2 gloo ranks for 1 iteration.
def test_dist_train_of_a_config_without_a_ddp_wrapper(repo_root: Path, reds_demo_dir: Path, tmp_path: Path):
    work = tmp_path / "work"
    opts = [f"gt_folder={reds_demo_dir}", "model_wrapper_cfg=None", "train_cfg.max_iters=1"]
    log = _run(
        ["sh", "tools/dist_train.sh", TINY, "2", "--work-dir", str(work), "--cfg-options", *opts], repo_root
    )
    assert "process rank 1 of world_size 2" in log and "Iter(train) [1/1]" in log
    ckpt = torch.load(work / "iter_1.pth", map_location="cpu", weights_only=True)
    n_tensors = len(MODELS.build(Config.fromfile(str(repo_root / TINY)).model).state_dict())
    assert ckpt["meta"]["iter"] == 1 and len(ckpt["state_dict"]) == n_tensors == 178
    assert all(k.startswith("generator.") and ".module." not in k for k in ckpt["state_dict"])


def test_config_without_a_training_part_is_one_line(repo_root: Path, tmp_path: Path):
    config = "configs/tiny_basicvsrpp_c8n1.py"  # a model for inference and tests: no data, loop or optimizer
    expected = (
        f"error: {config}: not a training config (no train_dataloader, train_cfg, optim_wrapper); "
        "train with one that has them, e.g. configs/tiny_reds_demo_train.py"
    )
    env = dict(os.environ, PORT=str(_free_port()), PYTHONPATH=str(repo_root))
    work = tmp_path / "work"
    for cmd in (
        ["sh", "tools/dist_train.sh", config, "2", "--work-dir", str(work)],
        [sys.executable, "tools/train.py", config, "--work-dir", str(work)],
    ):
        proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
        assert (proc.returncode, proc.stdout, proc.stderr.strip()) == (1, "", expected), proc.stderr[-3000:]
    assert not work.exists()
