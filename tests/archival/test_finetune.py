"""Per-video fine-tuning with the mmengine Runner: budget, resume, frozen parameters, base checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from basicvsr_archival.archival.codec import CodecSettings, decode_frames, encode_lr
from basicvsr_archival.archival.finetune import (
    build_restorer,
    check_base_fits,
    finetune_video,
    initial_state,
    zero_flow_spynet,
)
from basicvsr_archival.archival.finetune_runner import NEVER, freeze, runner_config
from basicvsr_archival.archival.finetune_settings import FinetuneError, FinetuneSettings
from basicvsr_archival.archival.pipeline import load_archival_config
from basicvsr_archival.utils.ffmpeg import VideoWriter, frames_to_video

REPO = Path(__file__).resolve().parents[2]
TINY = load_archival_config(REPO / "configs" / "archival" / "tiny_ci.py").model


@pytest.fixture(scope="module")
def pair(reds_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(LR, GT): 5 real frames cropped to 128x96 (lossless), and their x2 H.264 encode decoded to FFV1."""
    tmp = tmp_path_factory.mktemp("pair")
    frames = tmp / "frames"
    frames.mkdir()
    for i, f in enumerate(sorted(reds_demo_dir.glob("*.png"))[:5]):
        os.symlink(f.resolve(), frames / f"{i:08d}.png")
    gt = frames_to_video(
        frames,
        tmp / "gt.mkv",
        25,
        codec="libx264",
        crf=0,
        preset="ultrafast",
        extra_args=["-vf", "crop=128:96:64:40"],
    )
    encode_lr(gt, tmp / "lr.mp4", CodecSettings(scale=2, crf=23))
    with VideoWriter(tmp / "lr.mkv", fps=25, lossless=True, codec="ffv1") as writer:
        writer.write_many(decode_frames(tmp / "lr.mp4"))
    return tmp / "lr.mkv", gt


def _settings(**kw) -> FinetuneSettings:
    base = dict(max_iters=2, max_seconds=600, clip_length=2, patch_size=128, lr=2e-3, lr_schedule="constant")
    base.update(frozen=("spynet", "deform_align"), eval_frames=0, checkpoint_interval=1, log_interval=1)
    base.update(kw)
    return FinetuneSettings(**base)


def test_finetune_trains_freezes_and_resumes(pair, tmp_path):
    lr, gt = pair
    work = tmp_path / "ft"
    res = finetune_video(TINY, lr, gt, work, _settings(eval_frames=2), scale=2, progress=False)
    stats = res.stats
    assert stats["iters"] == 2 and stats["stopped_by"] == "max_iters" and stats["resumed_from_iter"] == 0
    assert stats["final_loss"] > 0 and 5 < stats["running_psnr"] < 60
    assert 5 < stats["psnr_before"] < 60 and 5 < stats["psnr_after"] < 60 and stats["eval_frames"] == [0, 2]
    init = torch.load(work / "init.pth", weights_only=True)["state_dict"]
    tuned = torch.load(res.checkpoint, weights_only=True)["state_dict"]
    for key in init:
        same = torch.equal(init[key], tuned[key])
        if "spynet" in key or "deform_align" in key:
            assert same, f"frozen {key} changed"
    assert not torch.equal(init["generator.conv_last.weight"], tuned["generator.conv_last.weight"])
    assert (work / "iter_2.pth").is_file() and (work / "last_checkpoint").is_file()

    # a crash after the checkpoint of iteration 2: the result files are gone, the checkpoints remain
    res.checkpoint.unlink()
    (work / "finetune_stats.json").unlink()
    again = finetune_video(TINY, lr, gt, work, _settings(max_iters=3), scale=2, progress=False)
    assert again.stats["resumed_from_iter"] == 2 and again.stats["iters"] == 3
    done = finetune_video(TINY, lr, gt, work, _settings(max_iters=3), scale=2, progress=False)
    assert done.stats == again.stats  # finished: returned without training
    with pytest.raises(FinetuneError, match="finished fine-tuning run"):
        finetune_video(TINY, lr, gt, work, _settings(max_iters=3), scale=2, progress=False, resume=False)


def _crash_after_checkpoint(res) -> None:
    """What a kill after the last checkpoint leaves: the checkpoints, without the result files."""
    res.checkpoint.unlink()
    (res.checkpoint.parent / "finetune_stats.json").unlink()


def _truncate(path: Path) -> None:
    """Cut a file to half its size (a kill while mmengine was saving it)."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_resume_from_a_moved_work_dir_and_past_a_truncated_checkpoint(pair, tmp_path, capfd):
    lr, gt = pair
    first = tmp_path / "ft"
    res = finetune_video(TINY, lr, gt, first, _settings(), scale=2, progress=False)
    _crash_after_checkpoint(res)
    assert str(first) in (first / "last_checkpoint").read_text()  # mmengine stores an absolute path

    work = tmp_path / "moved" / "ft"  # 1. the work dir was moved: resumes from its own iter_2.pth
    work.parent.mkdir()
    first.rename(work)
    res = finetune_video(TINY, lr, gt, work, _settings(max_iters=3), scale=2, progress=False)
    assert res.stats["resumed_from_iter"] == 2 and res.stats["iters"] == 3
    assert sorted(p.name for p in work.glob("iter_*.pth")) == ["iter_2.pth", "iter_3.pth"]

    _crash_after_checkpoint(res)  # 2. killed while saving iter_3.pth: back to iter_2.pth, one warning
    _truncate(work / "iter_3.pth")
    capfd.readouterr()
    res = finetune_video(TINY, lr, gt, work, _settings(max_iters=4), scale=2, progress=False)
    assert res.stats["resumed_from_iter"] == 2 and res.stats["iters"] == 4
    warning = capfd.readouterr().err.strip().splitlines()[0]
    assert warning.startswith(f"warning: {work / 'iter_3.pth'}: checkpoint is truncated or corrupt: ")
    assert warning.endswith("; resuming from the earlier iter_2.pth")

    _crash_after_checkpoint(res)  # 3. no intact checkpoint left: fine-tuning starts over from init.pth
    for ckpt in work.glob("iter_*.pth"):
        _truncate(ckpt)
    res = finetune_video(TINY, lr, gt, work, _settings(max_iters=1), scale=2, progress=False)
    assert res.stats["resumed_from_iter"] == 0 and res.stats["iters"] == 1
    warning = capfd.readouterr().err.strip().splitlines()[0]
    assert warning.startswith(f"warning: {work / 'iter_4.pth'}: checkpoint is truncated or corrupt: ")
    assert warning.endswith("and no earlier one is intact; starting over")


def test_wall_clock_budget_stops_and_holds_across_resume(pair, tmp_path):
    lr, gt = pair
    work = tmp_path / "ft"
    res = finetune_video(
        TINY, lr, gt, work, _settings(max_iters=50, max_seconds=1e-3), scale=2, progress=False
    )
    assert res.stats["iters"] == 1 and res.stats["stopped_by"] == "max_seconds"
    res.checkpoint.unlink()
    (work / "finetune_stats.json").unlink()
    again = finetune_video(
        TINY, lr, gt, work, _settings(max_iters=50, max_seconds=1e-3), scale=2, progress=False
    )
    assert again.stats["iters"] == 1 and again.stats["stopped_by"] == "max_seconds"  # budget already spent


def test_from_scratch_starts_with_zero_flow():
    state, info = initial_state(TINY, None, False, seed=0)
    assert info["from"] == "scratch" and info["zero_flow_tensors"] == 12  # 6 levels x (weight, bias)
    model = build_restorer(TINY)
    model.load_state_dict(state)
    frames = torch.rand(1, 2, 3, 64, 64)
    flows_forward, flows_backward = model.generator.compute_flow(frames)
    assert float(flows_backward.abs().max()) == 0.0
    assert float(flows_forward.abs().max()) == 0.0
    state2, _ = initial_state(TINY, None, False, seed=0)
    assert all(torch.equal(state[k], state2[k]) for k in state)  # seeded
    assert zero_flow_spynet({"generator.conv_last.weight": torch.ones(1)}) == 0


def test_base_checkpoint_must_fit(tmp_path):
    state = build_restorer(TINY).state_dict()
    assert check_base_fits(state, state, False, "b")["ignored_base_tensors"] == 0
    extra = dict(state, **{"generator.upsample2.weight": torch.zeros(3)})
    with pytest.raises(FinetuneError, match="1 unexpected tensors"):
        check_base_fits(state, extra, False, "b.pth")
    assert check_base_fits(state, extra, True, "b.pth")["ignored_base_tensors"] == 1
    missing = {k: v for k, v in state.items() if "conv_last" not in k}
    with pytest.raises(
        FinetuneError, match=r"b.pth: base checkpoint does not fit .* 2 model tensors missing"
    ):
        check_base_fits(state, missing, False, "b.pth")
    wrong = dict(state, **{"generator.conv_last.bias": torch.zeros(4)})
    with pytest.raises(FinetuneError, match="1 shape mismatches"):
        check_base_fits(state, wrong, False, "b.pth")
    path = tmp_path / "base.pth"
    torch.save({"state_dict": missing}, path)
    with pytest.raises(FinetuneError, match="missing from it"):
        initial_state(TINY, path, False, 0)


def test_invalid_settings():
    with pytest.raises(FinetuneError, match="clip_length"):
        FinetuneSettings(clip_length=1)
    for key, value, message in [
        ("lr", "abc", "finetune.lr must be a number > 0, got 'abc'"),
        ("lr", 0, "finetune.lr must be a number > 0, got 0"),
        ("max_seconds", "1e3", "finetune.max_seconds must be a number > 0, got '1e3'"),
        ("eta_min_ratio", 1.5, r"finetune.eta_min_ratio must be a number in \[0, 1\], got 1.5"),
        ("enabled", "no", "finetune.enabled must be True or False, got 'no'"),
        ("frozen", "spynet", "finetune.frozen must be a list of parameter name fragments, got 'spynet'"),
    ]:
        with pytest.raises(FinetuneError, match=f"^{message}$"):
            FinetuneSettings.from_dict({key: value})
    assert FinetuneSettings(eta_min_ratio=0, frozen=["spynet"]).frozen == ("spynet",)
    with pytest.raises(FinetuneError, match="unknown finetune setting"):
        FinetuneSettings.from_dict({"max_iters": 3, "epochs": 2})
    assert FinetuneSettings(enabled=False).active_iters == 0


def test_freeze_is_where_frozen_acts():
    model = build_restorer(TINY)
    names = freeze(model, ("spynet", "deform_align"))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(names) == 100 and len(trained) == 74 and not trained & set(names)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 84_907  # tiny_ci: 85k trained
    model.apply_fix_iter_schedule(10**6)  # the restorer's SPyNet schedule agrees: never unfreezes
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trained and model.fix_iter == NEVER

    partial = build_restorer(TINY)
    freeze(partial, ("deform_align",))
    partial.apply_fix_iter_schedule(0)  # SPyNet trains from the start; deform_align stays frozen
    assert partial.fix_iter == 0 and all(
        p.requires_grad for n, p in partial.named_parameters() if "spynet" in n
    )
    assert not any(p.requires_grad for n, p in partial.named_parameters() if "deform_align" in n)
    with pytest.raises(FinetuneError, match="freezes every parameter"):
        freeze(build_restorer(TINY), ("generator",))


def test_runner_config_fills_the_recipe(tmp_path):
    def cfg(**kw):
        settings = FinetuneSettings(**{"lr": 1e-3, "max_iters": 50, "seed": 7, **kw})
        return runner_config(
            TINY, Path("lr.mkv"), Path("gt.mkv"), tmp_path, settings, 2, 30, (96, 128), None, False
        )

    cosine = cfg(eta_min_ratio=0.25)
    assert cosine.optim_wrapper.optimizer == dict(type="Adam", betas=(0.9, 0.99), lr=1e-3)
    assert cosine.param_scheduler == dict(
        type="CosineAnnealingLR", by_epoch=False, begin=0, T_max=50, eta_min=2.5e-4, end=50
    )
    assert cosine.train_cfg == dict(type="IterBasedTrainLoop", max_iters=50)
    assert cosine.train_dataloader.sampler == dict(type="InfiniteSampler", shuffle=True, seed=7)
    crop = cosine.train_dataloader.dataset.pipeline[3]
    assert crop == dict(type="PairedRandomCrop", gt_patch_size=96, scale=2)  # min(256, 96, 128)
    assert (
        cosine.default_hooks.checkpoint.interval == 200
        and cosine.default_hooks.checkpoint.max_keep_ckpts == 2
    )
    assert cfg(lr_schedule="constant").param_scheduler is None
    assert "paramwise_cfg" not in cosine.optim_wrapper  # frozen parameters are set on the model (freeze)
