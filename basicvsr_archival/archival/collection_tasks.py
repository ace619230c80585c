"""The work of a collection run that engines hand to workers: per-video preparation and cluster fine-tuning.

Each task is a top-level function of plain arguments (picklable for Ray), writes only into its own
work dir under ``STORE/work/`` and returns a JSON-friendly record; the driver alone writes the
catalog and the objects. The engines pin torch's intra-op threads (``cluster.threads``) in every task,
so that the local and the Ray engine compute the same bits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from basicvsr_archival.models.builder import build_restorer

from .descriptors import compute_descriptors
from .finetune import finetune_cluster, initial_state
from .job_config import ArchivalConfig
from .pipeline import DECODED_NAME, LR_NAME, prepare_video


def base_state(cfg: ArchivalConfig) -> dict[str, torch.Tensor]:
    """The base weights: the base checkpoint's, or the seeded initialisation of a run from scratch."""
    state, _ = initial_state(cfg.model, cfg.base_checkpoint, cfg.base_allow_extra_keys, cfg.finetune.seed)
    return state


def prepare_task(job: Mapping[str, Any]) -> dict[str, Any]:
    """Probe, LR-encode, decode and extract audio of one video, then its content descriptor (a worker task).

    ``job``: ``cfg`` (:class:`ArchivalConfig`), ``source`` and ``work`` (paths). Resumable: finished
    stages recorded in ``work/state.json`` are kept (see :mod:`.pipeline`). Returns the stage
    records, the work files (``lr``, ``decoded``; audio members beside them) and ``descriptor``.
    """
    cfg, work_dir = job["cfg"], Path(job["work"])
    state = prepare_video(cfg, Path(job["source"]), work_dir)
    model = build_restorer(cfg.model, base_state(cfg)).eval()
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


def finetune_task(job: Mapping[str, Any]) -> dict[str, Any]:
    """Fine-tune one model on all of a cluster's (decoded LR, source) pairs (a worker task, resumable).

    ``job``: ``cfg``, ``pairs``, ``work``, ``iters_per_video``, ``max_iters``, ``threads`` and
    ``max_seconds`` (None: the config's ``finetune.max_seconds``, only a safety cap); optional
    ``start``: a checkpoint to start from instead of the config's base (e.g. the stored cluster model).
    """
    cfg, start = job["cfg"], job.get("start")
    settings = replace(cfg.finetune, max_seconds=job["max_seconds"] or cfg.finetune.max_seconds)
    result = finetune_cluster(
        cfg.model,
        [(Path(lq), Path(gt)) for lq, gt in job["pairs"]],
        Path(job["work"]),
        settings,
        iters_per_video=job["iters_per_video"],
        max_iters=job["max_iters"],
        base_checkpoint=Path(start) if start else cfg.base_checkpoint,
        base_allow_extra_keys=False if start else cfg.base_allow_extra_keys,
        scale=cfg.codec.scale,
        threads=job["threads"],
        eval_max_seq_len=cfg.restore.max_seq_len,
        eval_overlap=cfg.restore.overlap,
        progress=False,
        resume=True,
    )
    return {"checkpoint": str(result.checkpoint), "stats": result.stats}
