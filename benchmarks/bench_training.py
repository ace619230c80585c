"""Short real training run on CPU: does a small BasicVSR++ learn on real frames?

GT = the real REDS demo frames (320x180), LR = their x4 MATLAB-bicubic downscale (``Degrade``, 8-bit).
Frames 0..N-6 train; the last ``--val-frames`` are held out. The held-out PSNR / SSIM (RGB and Y) of the
model before and after training are printed next to MATLAB-bicubic x4 upscaling of the same LR frames.

    python benchmarks/bench_training.py                       # defaults: about 5-10 min on 2 CPU cores
    python benchmarks/bench_training.py --iters 50 --threads 2

Choices, and why: SPyNet has no pretrained weights offline, so it stays fixed (random) for the whole run
(``fix_iter = iters``) and the network learns to propagate without useful flow. BasicVSR++ pads LR
inputs smaller than 64x64 up to 64x64, so a 64 px GT crop (16 px LR) costs as much as the largest
crop that fits the 45-pixel-high LR frames; the largest one (176 px GT) is used. Adam with a cosine
decay from ``--lr`` to 1e-7 as in the official schedule, Charbonnier loss.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.dataset import default_collate  # noqa: E402
from mmengine.logging import MessageHub  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402

import basicvsr_archival.models  # noqa: E402, F401  (registers the restorer)
from basicvsr_archival.datasets import VideoClipsDataset  # noqa: E402
from basicvsr_archival.evaluation import PSNR, SSIM, psnr, ssim, to_uint8_frames  # noqa: E402
from basicvsr_archival.registry import MODELS  # noqa: E402
from basicvsr_archival.utils.imresize import imresize  # noqa: E402

SCALE = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description="Short CPU training run of a small BasicVSR++ on real frames."
    )
    parser.add_argument("--frames", default=str(ROOT.parent / "shared" / "data" / "reds_demo_000"))
    parser.add_argument("--iters", type=int, default=100, help="training iterations (default 100)")
    parser.add_argument("--num-frames", type=int, default=3, help="frames per training clip (default 3)")
    parser.add_argument("--patch", type=int, default=176, help="GT crop size (default 176 = 44 px LR)")
    parser.add_argument("--mid-channels", type=int, default=16)
    parser.add_argument("--num-blocks", type=int, default=1)
    parser.add_argument("--lr", type=float, default=5e-4, help="initial learning rate (default 5e-4)")
    parser.add_argument("--val-frames", type=int, default=5, help="held-out frames at the end (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def build_datasets(args: argparse.Namespace) -> tuple[VideoClipsDataset, VideoClipsDataset]:
    """Training clips (random crops, flips) and the held-out clip (whole frames), LR made on the fly."""
    train_pipeline = [
        dict(type="GenerateSegmentIndices", interval_list=[1], num_input_frames=args.num_frames),
        dict(type="LoadImageFromFile", key="gt"),
        dict(type="Degrade", scale=SCALE, degradation="BI"),
        dict(type="PairedRandomCrop", gt_patch_size=args.patch, scale=SCALE),
        dict(type="Flip", flip_ratio=0.5, direction="horizontal"),
        dict(type="Flip", flip_ratio=0.5, direction="vertical"),
        dict(type="RandomTransposeHW", transpose_ratio=0.5),
        dict(type="PackInputs"),
    ]
    val_pipeline = [
        dict(type="GenerateSegmentIndices", random_start=False),
        dict(type="LoadImageFromFile", key="gt"),
        dict(type="Degrade", scale=SCALE, degradation="BI"),
        dict(type="PackInputs", scale=SCALE),
    ]
    common = dict(gt_folder=args.frames, clip_length=1000, num_val_frames=args.val_frames, scale=SCALE)
    train = VideoClipsDataset(num_input_frames=args.num_frames, pipeline=train_pipeline, **common)
    val = VideoClipsDataset(test_mode=True, pipeline=val_pipeline, **common)
    return train, val


@torch.no_grad()
def evaluate(model: torch.nn.Module, batch: dict) -> dict[str, float]:
    """Held-out PSNR / SSIM (RGB and Y) of the model's output, MMEditing-style metrics."""
    model.eval()
    preds = model.val_step(batch)
    model.train()
    scores = {}
    for name, metric in (
        ("PSNR", PSNR()),
        ("SSIM", SSIM()),
        ("PSNR-Y", PSNR(convert_to="y")),
        ("SSIM-Y", SSIM(convert_to="y")),
    ):
        metric.process(batch, preds)
        scores[name] = next(iter(metric.compute_metrics(metric.results).values()))
    return scores


def bicubic_scores(batch: dict) -> dict[str, float]:
    """The same metrics for MATLAB-bicubic x4 upscaling of the held-out LR frames."""
    lqs = to_uint8_frames(batch["inputs"][0]).astype(np.uint8)
    gts = to_uint8_frames(batch["data_samples"]["gt"][0])
    ups = [imresize(lq, float(SCALE)).astype(np.float64) for lq in lqs]
    return {
        "PSNR": float(np.mean([psnr(u, g) for u, g in zip(ups, gts)])),
        "SSIM": float(np.mean([ssim(u, g) for u, g in zip(ups, gts)])),
        "PSNR-Y": float(np.mean([psnr(u, g, convert_to="y") for u, g in zip(ups, gts)])),
        "SSIM-Y": float(np.mean([ssim(u, g, convert_to="y") for u, g in zip(ups, gts)])),
    }


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Train, evaluate before / after and print the comparison table."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    train, val = build_datasets(args)
    val_batch = default_collate([val[0]])
    model = MODELS.build(
        dict(
            type="BasicVSR",
            generator=dict(
                type="BasicVSRPlusPlus",
                mid_channels=args.mid_channels,
                num_blocks=args.num_blocks,
                is_low_res_input=True,
                spynet_pretrained=None,
            ),
            pixel_loss=dict(type="CharbonnierLoss", loss_weight=1.0, reduction="mean"),
            train_cfg=dict(fix_iter=args.iters),
        )
    )
    optim = build_optim_wrapper(
        model, dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=args.lr, betas=(0.9, 0.99)))
    )
    hub = MessageHub.get_current_instance()

    before = evaluate(model, val_batch)
    losses, start = [], time.time()
    for it in range(args.iters):
        hub.update_info("iter", it)
        lr = 1e-7 + 0.5 * (args.lr - 1e-7) * (1 + math.cos(math.pi * it / args.iters))
        for group in optim.optimizer.param_groups:
            group["lr"] = lr
        batch = default_collate([train[np.random.randint(len(train))]])
        losses.append(float(torch.as_tensor(model.train_step(batch, optim)["loss"]).detach()))
        if (it + 1) % max(1, args.iters // 10) == 0:
            print(
                f"iter {it + 1:4d}/{args.iters}  loss {np.mean(losses[-10:]):.4f}  "
                f"{(time.time() - start) / (it + 1):.2f} s/iter",
                flush=True,
            )
    train_s = time.time() - start
    after = evaluate(model, val_batch)
    bicubic = bicubic_scores(val_batch)

    n_frames = val_batch["inputs"].shape[1]
    print(
        f"\nheld-out frames: {n_frames} x {tuple(val_batch['data_samples']['gt'].shape[-2:])} GT, "
        f"trained {args.iters} iters in {train_s:.0f} s ({train_s / max(args.iters, 1):.2f} s/iter), "
        f"c{args.mid_channels}n{args.num_blocks}, {args.num_frames}-frame clips, {args.patch} px GT crops"
    )
    print(f"{'':18}{'PSNR':>9}{'SSIM':>9}{'PSNR-Y':>9}{'SSIM-Y':>9}")
    for name, row in (("before training", before), ("after training", after), ("bicubic x4", bicubic)):
        print(f"{name:18}{row['PSNR']:9.3f}{row['SSIM']:9.4f}{row['PSNR-Y']:9.3f}{row['SSIM-Y']:9.4f}")
    return dict(before=before, after=after, bicubic=bicubic)


if __name__ == "__main__":
    main()
