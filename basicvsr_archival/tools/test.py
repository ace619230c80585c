"""Evaluate a checkpoint on a config's test set and print PSNR / SSIM per clip and their mean.

Examples::

    python tools/test.py configs/basicvsr_plusplus_reds4.py work_dirs/reds4/iter_600000.pth
    python tools/test.py CONFIG CKPT --save-path results/reds4      # also write the SR frames as PNG
    sh tools/dist_test.sh CONFIG CKPT 2                              # torchrun, --launcher pytorch

Checkpoints are mmengine / MMEditing files (``state_dict`` with ``generator.`` keys) or a bare state dict.
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
from mmengine.config import DictAction
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.runner import Runner

# imported for their registrations: datasets / transforms, DDP wrappers and hooks, metrics, models
import basicvsr_archival.datasets
import basicvsr_archival.engine
import basicvsr_archival.evaluation
import basicvsr_archival.models  # noqa: F401
from basicvsr_archival.datasets.io import write_image
from basicvsr_archival.engine.checkpoint import trusted_torch_load
from basicvsr_archival.engine.config import load_config, set_work_dir
from basicvsr_archival.engine.ddp import use_cpu_compatible_wrapper
from basicvsr_archival.engine.launcher import finalize_distributed, init_distributed
from basicvsr_archival.evaluation import ClipMetric
from basicvsr_archival.utils.cli import add_debug_argument, add_runner_arguments, run_cli


class SavePredictionsHook(Hook):
    """Write every predicted frame to ``{save_path}/{clip key}/{frame:08d}.png`` (RGB, 8-bit, atomic)."""

    priority = "LOW"

    def __init__(self, save_path: str) -> None:
        self.save_path = Path(save_path)

    def after_test_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        """Save the predictions of one test batch."""
        for sample in outputs or []:
            frames = sample["pred"].detach().cpu().clamp(0, 1).numpy()  # (t, 3, H, W)
            for i, frame in enumerate(frames):
                img = np.round(frame.transpose(1, 2, 0) * 255.0).astype(np.uint8)
                write_image(self.save_path / str(sample["key"]) / f"{i:08d}.png", img)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint (PSNR / SSIM per clip and mean).")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file (.pth)")
    parser.add_argument("--save-path", help="folder to write the super-resolved frames to (PNG)")
    parser.add_argument("--work-dir", help="folder for the test logs (default: work_dirs/<config name>)")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default={},
        help="override config entries; a dot-less key naming a dataset field (data_root, ...) "
        "is set in every split",
    )
    add_runner_arguments(parser)
    add_debug_argument(parser)
    return parser.parse_args(argv)


def format_report(metrics: dict[str, float], clip_metrics: list[ClipMetric]) -> str:
    """Table of the per-clip values of every clip metric followed by the mean row."""
    names = [m.name for m in clip_metrics]
    keys = list(dict.fromkeys(k for m in clip_metrics for k in m.per_clip))
    width = max([len("clip"), len("mean"), *(len(k) for k in keys)])
    lines = [f"{'clip':<{width}}  " + "  ".join(f"{n:>8}" for n in names)]
    for key in keys:
        lines.append(
            f"{key:<{width}}  "
            + "  ".join(f"{m.per_clip.get(key, float('nan')):>8.4f}" for m in clip_metrics)
        )
    lines.append(f"{'mean':<{width}}  " + "  ".join(f"{metrics.get(n, float('nan')):>8.4f}" for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the test loop on the checkpoint, print the report (main process) and return the metrics."""
    args = parse_args(argv)
    if not Path(args.checkpoint).is_file():
        raise FileNotFoundError(f"{args.checkpoint}: checkpoint file not found")
    init_distributed(args.launcher)
    cfg = load_config(args.config, args.cfg_options)
    set_work_dir(cfg, args.config, args.work_dir)
    cfg.launcher = args.launcher
    if args.launcher != "none":
        use_cpu_compatible_wrapper(cfg)  # mmengine's wrappers die on device_ids with CPU (gloo) ranks
    cfg.load_from, cfg.resume = args.checkpoint, False
    runner = Runner.from_cfg(cfg)
    if args.save_path:
        runner.register_hook(SavePredictionsHook(args.save_path))
    try:
        with trusted_torch_load() if args.trust_checkpoint else contextlib.nullcontext():
            metrics = runner.test()
    except pickle.UnpicklingError as exc:
        raise RuntimeError(
            "checkpoint is not loadable with torch.load(weights_only=True) (a full pickle, e.g. written "
            "without SafeCheckpointHook); pass --trust-checkpoint if you trust the file"
        ) from exc
    if is_main_process():
        clip_metrics = [m for m in runner.test_evaluator.metrics if isinstance(m, ClipMetric)]
        print(format_report(metrics, clip_metrics), flush=True)
    finalize_distributed()
    return metrics


if __name__ == "__main__":
    sys.exit(run_cli(main))
