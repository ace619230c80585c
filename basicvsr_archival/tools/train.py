"""Train a model from a config file with mmengine's Runner (single process or torchrun).

Examples::

    python tools/train.py configs/basicvsr_plusplus_reds4.py --work-dir work_dirs/reds4
    python tools/train.py configs/tiny_reds_demo_train.py --cfg-options model.generator.mid_channels=16
    python tools/train.py CONFIG --resume                  # latest checkpoint in the work dir
    python tools/train.py CONFIG --resume work_dirs/x/iter_4.pth
    sh tools/dist_train.sh CONFIG 8 --work-dir work_dirs/x # torchrun, --launcher pytorch
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import sys
from pathlib import Path

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

# imported for their registrations: datasets / transforms, DDP wrappers and hooks, metrics, models
import basicvsr_archival.datasets
import basicvsr_archival.engine
import basicvsr_archival.evaluation
import basicvsr_archival.models  # noqa: F401
from basicvsr_archival.engine.checkpoint import trusted_torch_load
from basicvsr_archival.engine.config import check_trainable, load_config, set_work_dir
from basicvsr_archival.engine.ddp import use_cpu_compatible_wrapper
from basicvsr_archival.engine.launcher import finalize_distributed, init_distributed
from basicvsr_archival.utils.cli import add_debug_argument, add_runner_arguments, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description="Train a video super-resolution model from a config file.")
    parser.add_argument("config", help="config file, e.g. configs/basicvsr_plusplus_reds4.py")
    parser.add_argument(
        "--work-dir", help="folder for logs and checkpoints (default: work_dirs/<config name>)"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CKPT",
        help="resume training: from CKPT, or (no value) from the latest checkpoint in the work dir",
    )
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (needs a CUDA GPU)")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default={},
        help="override config entries, e.g. train_cfg.max_iters=10 model.generator.mid_channels=16; "
        "a dot-less key naming a dataset field (data_root, gt_folder, ...) is set in every split",
    )
    add_runner_arguments(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check the config and arguments, then exit (dist_train.sh does so before starting ranks)",
    )
    add_debug_argument(parser)
    return parser.parse_args(argv)


def build_cfg(args: argparse.Namespace) -> Config:
    """The merged config for ``args`` (work dir, resume, AMP, launcher and DDP wrapper applied).

    Raises :class:`ConfigError` for a config without a training part. A distributed run uses the
    project's CPU-compatible DDP wrapper where the config names mmengine's or none.
    """
    cfg = load_config(args.config, args.cfg_options)
    check_trainable(cfg, args.config)
    set_work_dir(cfg, args.config, args.work_dir)
    cfg.launcher = args.launcher
    if args.launcher != "none":
        use_cpu_compatible_wrapper(cfg)
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        if not Path(args.resume).is_file():
            raise FileNotFoundError(f"{args.resume}: checkpoint to resume from not found")
        cfg.resume, cfg.load_from = True, args.resume
    if not cfg.get("resume") and cfg.get("load_from") and not Path(cfg.load_from).is_file():
        raise FileNotFoundError(
            f"{cfg.load_from}: load_from checkpoint not found "
            "(pass --cfg-options load_from=PATH or load_from=None)"
        )
    if args.amp:
        if not torch.cuda.is_available():
            raise RuntimeError("--amp needs a CUDA GPU (mmengine's AmpOptimWrapper); none is available")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    return cfg


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, set up the process group and run training."""
    args = parse_args(argv)
    if args.check:
        build_cfg(args)
        return
    rank, world_size = init_distributed(args.launcher)
    if world_size > 1:
        print(f"[train.py] process rank {rank} of world_size {world_size}", flush=True)
    cfg = build_cfg(args)
    runner = Runner.from_cfg(cfg)
    try:
        with trusted_torch_load() if args.trust_checkpoint else contextlib.nullcontext():
            runner.train()
    except pickle.UnpicklingError as exc:
        raise RuntimeError(
            "checkpoint is not loadable with torch.load(weights_only=True) (a full pickle, e.g. written "
            "without SafeCheckpointHook); pass --trust-checkpoint if you trust the file"
        ) from exc
    finalize_distributed()


if __name__ == "__main__":
    sys.exit(run_cli(main))
