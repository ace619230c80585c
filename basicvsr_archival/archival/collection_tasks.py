"""The work of a collection run that engines hand to workers: per-video preparation and cluster fine-tuning.

Each task is a top-level function of plain arguments (picklable for Ray), writes only into its own
work dir under ``STORE/work/`` and returns a JSON-friendly record; the driver alone writes the
catalog and the objects. Every task pins torch's intra-op threads (``cluster.threads``) so that the
local and the Ray engine compute the same bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from basicvsr_archival.utils.threads import pinned_threads

from .descriptors import compute_descriptors
from .finetune import build_restorer, finetune_cluster, initial_state
from .job_config import ArchivalConfig
from .pipeline import DECODED_NAME, LR_NAME, prepare_video


def base_state(cfg: ArchivalConfig) -> dict[str, torch.Tensor]:
    """The base weights: the base checkpoint's, or the seeded initialisation of a run from scratch."""
    state, _ = initial_state(cfg.model, cfg.base_checkpoint, cfg.base_allow_extra_keys, cfg.finetune.seed)
    return state


def prepare_task(cfg: ArchivalConfig, source: str, work: str, threads: int) -> dict[str, Any]:
    """Probe, LR-encode, decode and extract audio of one video, then its content descriptor (a worker task).

    Resumable: finished stages recorded in ``work/state.json`` are kept (see :mod:`.pipeline`).
    Returns the stage records, the work files (``lr``, ``decoded``, audio members) and ``descriptor``.
    """
    work_dir = Path(work)
    with pinned_threads(threads):
        state = prepare_video(cfg, Path(source), work_dir)
        model = build_restorer(cfg.model, cfg.finetune.seed)
        model.load_state_dict(base_state(cfg))
        descriptor = compute_descriptors(work_dir / DECODED_NAME, model.generator)
    stages = state.data["stages"]
    return {
        "probe": stages["probe"],
        "encode_lr": stages["encode_lr"],
        "audio": stages["audio"],
        "lr": str(work_dir / LR_NAME),
        "decoded": str(work_dir / DECODED_NAME),
        "descriptor": descriptor,
    }


def finetune_task(
    cfg: ArchivalConfig,
    pairs: Sequence[tuple[str, str]],
    work: str,
    iterations: int,
    threads: int,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Fine-tune one model on all of a cluster's (decoded LR, source) pairs (a worker task, resumable).

    ``iterations`` is the cluster's budget; ``max_seconds`` (default: the config's) only a safety cap.
    """
    settings = replace(
        cfg.finetune, max_iters=iterations, max_seconds=max_seconds or cfg.finetune.max_seconds
    )
    with pinned_threads(threads):
        result = finetune_cluster(
            cfg.model,
            [(Path(lq), Path(gt)) for lq, gt in pairs],
            Path(work),
            settings,
            base_checkpoint=cfg.base_checkpoint,
            base_allow_extra_keys=cfg.base_allow_extra_keys,
            scale=cfg.codec.scale,
            progress=False,
            resume=True,
        )
    return {"checkpoint": str(result.checkpoint), "stats": result.stats}
