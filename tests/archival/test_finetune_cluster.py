"""Cluster fine-tuning: one model trained on clips of several real LR/GT video pairs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from mmengine.hooks import CheckpointHook

from basicvsr_archival.archival.codec import CodecSettings, decode_frames, encode_lr
from basicvsr_archival.archival.engines import make_engine
from basicvsr_archival.archival.finetune import cluster_iters, finetune_cluster
from basicvsr_archival.archival.finetune_settings import FinetuneError, FinetuneSettings
from basicvsr_archival.archival.pipeline import load_archival_config
from basicvsr_archival.utils.ffmpeg import VideoWriter, probe_video, run_ffmpeg

REPO = Path(__file__).resolve().parents[2]
TINY = load_archival_config(REPO / "configs" / "archival" / "tiny_ci.py").model
SOURCES = ("bigbuckbunny.mp4", "tree.avi")  # animation and a real scene


def _cut(src: Path, dst: Path, start_s: float, frames: int) -> Path:
    """``frames`` frames of ``src`` from ``start_s`` seconds, scaled to 128x96, lossless H.264."""
    args = ["-ss", str(start_s), "-i", str(src), "-frames:v", str(frames), "-an", "-vf", "scale=128:96"]
    run_ffmpeg([*args, "-c:v", "libx264", "-crf", "0", "-preset", "ultrafast", "-y", str(dst)], "cut")
    return dst


@pytest.fixture(scope="module")
def pairs(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path]]:
    """Two (LR, GT) pairs: 6 real frames of two sources at 128x96, LR = their x2 H.264 encode as FFV1."""
    tmp = tmp_path_factory.mktemp("cluster_pairs")
    out = []
    for name in SOURCES:
        stem = Path(name).stem
        gt = _cut(shared_dir / "data" / "videos" / name, tmp / f"{stem}_gt.mkv", 1.0, 6)
        encode_lr(gt, tmp / f"{stem}_lr.mp4", CodecSettings(scale=2, crf=23))
        with VideoWriter(tmp / f"{stem}_lr.mkv", fps=25, lossless=True, codec="ffv1") as writer:
            writer.write_many(decode_frames(tmp / f"{stem}_lr.mp4"))
        out.append((tmp / f"{stem}_lr.mkv", gt))
    return out


def _settings(**kw) -> FinetuneSettings:
    base = dict(max_iters=999, max_seconds=600, clip_length=2, patch_size=64, lr=2e-3, lr_schedule="constant")
    base.update(frozen=("spynet", "deform_align"), eval_frames=3, checkpoint_interval=4, log_interval=1)
    base.update(kw)
    return FinetuneSettings(**base)


class _KilledError(Exception):
    """Stands for a kill of the process right after a checkpoint was written."""


def test_cluster_budget_formula():
    assert cluster_iters(20, 2) == 40 and cluster_iters(20, 2, max_iters=30) == 30
    assert cluster_iters(250, 4, max_iters=1500) == 1000 and cluster_iters(0, 3) == 0
    with pytest.raises(FinetuneError, match=r"^cluster.iters_per_video must be an int >= 0, got -1$"):
        cluster_iters(-1, 2)
    with pytest.raises(FinetuneError, match="at least one"):
        finetune_cluster(TINY, [], "unused", _settings(), iters_per_video=1)


KW = dict(iters_per_video=16, max_iters=24, scale=2, progress=False)


@pytest.fixture(scope="module")
def full_run(pairs, tmp_path_factory: pytest.TempPathFactory):
    """An uninterrupted cluster fine-tuning of the two pairs (24 iterations)."""
    return finetune_cluster(TINY, pairs, tmp_path_factory.mktemp("full") / "ft", _settings(), **KW)


def _weights(result) -> dict[str, torch.Tensor]:
    """The state dict of a fine-tuning result."""
    return torch.load(result.checkpoint, weights_only=True)["state_dict"]


def _changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors that differ."""
    return [k for k in a if not torch.equal(a[k], b[k])]


def _kill_at_8(exit_process: bool):
    """A CheckpointHook.after_train_iter that writes the checkpoint, then dies at iteration 8."""
    original = CheckpointHook.after_train_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        original(self, runner, batch_idx, data_batch, outputs)
        if runner.iter == 8:
            if exit_process:
                os._exit(1)
            raise _KilledError

    return after_train_iter


def test_cluster_model_improves_every_video(pairs, full_run):
    assert [probe_video(gt).num_frames for _, gt in pairs] == [6, 6]
    st = full_run.stats
    assert st["iters"] == 24 and st["budget"] == dict(iters_per_video=16, videos=2, max_iters=24, iters=24)
    assert st["stopped_by"] == "max_iters" and st["threads"] == 1 and len(st["videos"]) == 2
    for video in st["videos"]:  # the one model is better than its start on both videos
        assert video["eval_frames"] == [0, 3]
        assert 15 < video["psnr_before"] < video["psnr_after"] - 0.2, video
    assert st["psnr_after"] > st["psnr_before"]
    again = finetune_cluster(TINY, pairs, full_run.checkpoint.parent, _settings(), **KW)
    assert again.stats == st  # finished: returned without training
    work = full_run.checkpoint.parent
    for other, kw in ((pairs[::-1], KW), (pairs, {**KW, "max_iters": 30})):
        with pytest.raises(FinetuneError, match="holds a cluster fine-tuning of other videos or budget"):
            finetune_cluster(TINY, other, work, _settings(), **kw)
    with pytest.raises(FinetuneError, match=r"nope.mkv: video of the cluster fine-tuning not found$"):
        finetune_cluster(TINY, [(pairs[0][0], work / "nope.mkv")], work, _settings(), **KW)


def test_interrupted_run_resumes_to_the_same_weights(pairs, full_run, tmp_path, monkeypatch):
    work = tmp_path / "killed"
    with monkeypatch.context() as patch:
        patch.setattr(CheckpointHook, "after_train_iter", _kill_at_8(exit_process=False))
        with pytest.raises(_KilledError):
            finetune_cluster(TINY, pairs, work, _settings(), **KW)
    assert not (work / "finetuned.pth").exists() and (work / "iter_8.pth").is_file()
    resumed = finetune_cluster(TINY, pairs, work, _settings(), **KW)
    assert resumed.stats["resumed_from_iter"] == 8 and resumed.stats["iters"] == 24
    assert _changed(_weights(full_run), _weights(resumed)) == []  # as if never interrupted
    assert resumed.stats["videos"] == full_run.stats["videos"]


def _cluster_task(job: tuple[list[tuple[Path, Path]], Path, str]) -> Path:
    """Fine-tune in a worker; the first attempt's worker process dies after the checkpoint of iteration 8."""
    pairs, work, marker = job
    if not Path(marker).exists():
        Path(marker).write_text("first attempt")
        CheckpointHook.after_train_iter = _kill_at_8(exit_process=True)
    return finetune_cluster(TINY, pairs, work, _settings(), **KW).checkpoint


def test_ray_worker_killed_while_fine_tuning_resumes(pairs, full_run, tmp_path, ray_in_process):
    ray_in_process.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    engine = make_engine("ray", max_retries=2)
    job = (pairs, tmp_path / "ft", str(tmp_path / "marker"))
    (res,) = engine.map(_cluster_task, {"c000": job}, kind="gpu", progress=False)
    assert res.error is None and res.attempts == 2 and res.worker_pid != os.getpid()
    stats = json.loads((tmp_path / "ft" / "finetune_stats.json").read_text())
    assert stats["resumed_from_iter"] == 8 and stats["iters"] == 24
    assert _changed(_weights(full_run), torch.load(res.value, weights_only=True)["state_dict"]) == []
