"""Engine helpers behind the tools: weights-only-safe checkpoints, CPU DDP wrappers, launcher, configs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from mmengine.logging import HistoryBuffer

from basicvsr_archival.engine import (
    SafeCheckpointHook,
    SeparateDistributedDataParallel,
    drop_cpu_device_ids,
    from_weights_only_safe,
    init_distributed,
    load_config,
)
from basicvsr_archival.registry import MODELS


def test_safe_checkpoint_roundtrip(tmp_path: Path):
    hub = dict(
        log_scalars={"train/loss": HistoryBuffer([0.5, 0.25], [1, 1], 10)},
        runtime_info={"best_score": np.float64(21.5), "arr": np.arange(3), "iter": 4},
        resumed_keys={"train/loss": True},
    )
    ckpt = {"message_hub": hub, "meta": {"seed": np.int64(3)}, "state_dict": {"w": torch.ones(2)}}
    SafeCheckpointHook().before_save_checkpoint(None, ckpt)
    torch.save(ckpt, tmp_path / "c.pth")
    loaded = torch.load(tmp_path / "c.pth", weights_only=True)  # would fail on a plain mmengine checkpoint
    SafeCheckpointHook().after_load_checkpoint(None, loaded)
    buf = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(buf, HistoryBuffer) and buf.mean() == pytest.approx(0.375) and buf.max_length == 10
    info = loaded["message_hub"]["runtime_info"]
    assert info["best_score"] == 21.5 and np.array_equal(info["arr"], np.arange(3)) and info["iter"] == 4
    assert loaded["meta"]["seed"] == 3 and from_weights_only_safe([1, (2,)]) == [1, (2,)]


def test_cpu_ddp_wrapper_keeps_plain_checkpoint_keys(monkeypatch: pytest.MonkeyPatch):
    assert drop_cpu_device_ids(torch.nn.Linear(2, 2), {"device_ids": [0], "x": 1}) == {"x": 1}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert init_distributed("pytorch") == (0, 1)
    try:
        model = MODELS.build(
            dict(type="BasicVSR", generator=dict(type="BasicVSRPlusPlus", mid_channels=8, num_blocks=1))
        )
        plain = list(model.state_dict())
        wrapped = SeparateDistributedDataParallel(model, find_unused_parameters=True, device_ids=[0])
        assert type(wrapped.module.generator).__name__ == "MMDistributedDataParallel"
        assert list(wrapped.module.state_dict()) == plain  # no 'generator.module.' keys
    finally:
        dist.destroy_process_group()


def test_launcher_and_config_errors(repo_root: Path, tmp_path: Path):
    assert init_distributed("none") == (0, 1)
    with pytest.raises(ValueError, match="unsupported launcher 'slurm'"):
        init_distributed("slurm")
    if "MASTER_PORT" not in os.environ:
        with pytest.raises(RuntimeError, match="needs torchrun's environment"):
            init_distributed("pytorch")
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "none.py")
    cfg = load_config(
        repo_root / "configs/basicvsr_plusplus_reds4.py", {"data_root": "/d", "lq_folder": None}
    )
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        assert cfg[loader].dataset.data_root == "/d" and cfg[loader].dataset.lq_folder is None
    assert cfg.model.train_cfg.fix_iter == 5000 and cfg.train_cfg.max_iters == 600_000
