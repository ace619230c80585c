"""Content-aware fine-tuning: train the SR model on (decoded LR, original HR) frames of one video.

The training itself is the project's training machinery, configured for one video: an mmengine
``Runner`` (recipe ``configs/archival/_base_/finetune_runner.py``, filled in by
:mod:`.finetune_runner`) with the :class:`~basicvsr_archival.models.BasicVSR` restorer, the
``VideoFileDataset`` reading the LR/GT video pair with PyAV, the standard crop / flip pipeline, Adam
and a cosine (or constant) schedule, mmengine's checkpoint hook for resuming. Added here:

* the start weights: the base checkpoint (loaded with key / shape checks) or a seeded random
  initialisation, saved once as ``init.pth`` in the work dir and given to the Runner as ``load_from``;
* the budget (:class:`~.finetune_runner.FinetuneProgressHook`): training stops once ``max_seconds``
  have been spent (time spent before an interruption counts, it is stored with each checkpoint);
* resuming: with checkpoints in the work dir the Runner resumes from the latest intact one, also in
  a moved work dir (:func:`~basicvsr_archival.engine.checkpoint.resume_checkpoint`); a finished
  run (``finetuned.pth`` + ``finetune_stats.json``) is returned without training again;
* the PSNR of the start and final weights on the evaluation frames.

Parameters named by ``frozen`` stay bit-identical (:func:`~.finetune_runner.freeze`), so a delta
model stores nothing for them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from basicvsr_archival.engine.checkpoint import resume_checkpoint
from basicvsr_archival.models.builder import build_restorer
from basicvsr_archival.utils.atomic import atomic_path, atomic_write_json
from basicvsr_archival.utils.ffmpeg import PathLike, probe_video

from .finetune_settings import FinetuneError, FinetuneSettings
from .model_storage import read_state_dict

FINETUNED_NAME = "finetuned.pth"
STATS_NAME = "finetune_stats.json"
INIT_NAME = "init.pth"


@dataclass
class FinetuneResult:
    """Fine-tuned weights (a checkpoint file with the restorer's ``state_dict``) and run statistics."""

    checkpoint: Path
    stats: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ model set-up
def check_base_fits(
    model_state: Mapping[str, torch.Tensor],
    base_state: Mapping[str, torch.Tensor],
    allow_extra_keys: bool,
    where: str,
) -> dict[str, int]:
    """Raise :class:`FinetuneError` unless every model tensor is in the base with the same shape.

    Extra base tensors (e.g. ``upsample2`` of a x4 base for a x2 model) are an error too unless
    ``allow_extra_keys``. Returns counts of loaded and ignored tensors.
    """
    missing = [k for k in model_state if k not in base_state]
    shapes = [k for k in model_state if k in base_state and base_state[k].shape != model_state[k].shape]
    extra = [k for k in base_state if k not in model_state]
    problems = []
    if missing:
        problems.append(f"{len(missing)} model tensors missing from it (e.g. {missing[0]})")
    if shapes:
        k = shapes[0]
        problems.append(
            f"{len(shapes)} shape mismatches (e.g. {k}: "
            f"{tuple(base_state[k].shape)} vs {tuple(model_state[k].shape)})"
        )
    if extra and not allow_extra_keys:
        problems.append(f"{len(extra)} unexpected tensors (e.g. {extra[0]}; set base_allow_extra_keys=True)")
    if problems:
        raise FinetuneError(f"{where}: base checkpoint does not fit the model config: " + "; ".join(problems))
    return {"loaded_tensors": len(model_state), "ignored_base_tensors": len(extra)}


_SPYNET_CONV = re.compile(r"spynet\.basic_module\.(\d+)\.basic_module\.(\d+)\.conv\.(weight|bias)$")


def zero_flow_spynet(state: dict[str, torch.Tensor]) -> int:
    """Zero the last convolution of every SPyNet level in ``state`` (in place): flows start at zero.

    A randomly initialised SPyNet predicts large random flows that make the alignment warp features
    to garbage; with zero flows the model starts from identity alignment. Returns the tensors zeroed.
    """
    last: dict[str, int] = {}
    for key in state:
        m = _SPYNET_CONV.search(key)
        if m:
            level = key[: m.start(2)]
            last[level] = max(last.get(level, -1), int(m.group(2)))
    zeroed = 0
    for key in state:
        m = _SPYNET_CONV.search(key)
        if m and int(m.group(2)) == last[key[: m.start(2)]]:
            state[key].zero_()
            zeroed += 1
    return zeroed


def initial_state(
    model_cfg: Mapping[str, Any], base_checkpoint: PathLike | None, allow_extra_keys: bool, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Start weights: the base checkpoint's tensors for the model's keys, or a seeded random init."""
    model = build_restorer(model_cfg, seed=seed)
    state = model.state_dict()
    if base_checkpoint is None:
        info: dict[str, Any] = {"from": "scratch", "seed": seed}
        if not (model_cfg.get("generator") or {}).get("spynet_pretrained"):
            info["zero_flow_tensors"] = zero_flow_spynet(state)
        return {k: v.clone() for k, v in state.items()}, info
    base = read_state_dict(base_checkpoint)
    info = check_base_fits(state, base, allow_extra_keys, str(base_checkpoint))
    out = {k: base[k].to(state[k].dtype).clone() for k in state}
    return out, {"from": "base", "base_checkpoint": str(base_checkpoint), **info}


def _save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path`` and rename it into place."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    atomic_write_json(path, obj, default=str)


# ------------------------------------------------------------------------------------------ evaluation
def _model_with(model_cfg: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """Restorer of ``model_cfg`` holding ``state`` (strict), in eval mode on the CPU."""
    return build_restorer(model_cfg, state).eval()


# ------------------------------------------------------------------------------------------ main entry
def _start_weights(
    work: Path, model_cfg: Mapping[str, Any], base: PathLike | None, allow_extra_keys: bool, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Start weights saved as ``init.pth`` in ``work`` (written on the first run) and how they were made."""
    init_path = work / INIT_NAME
    if not init_path.is_file():
        state, init_info = initial_state(model_cfg, base, allow_extra_keys, seed)
        _save_atomic({"state_dict": state, "meta": {"init": init_info}}, init_path)
    init = torch.load(init_path, map_location="cpu", weights_only=True)
    return init["state_dict"], init.get("meta", {}).get("init", {})


def _train(
    model_cfg: Mapping[str, Any],
    lq: Path,
    gt: Path,
    work: Path,
    settings: FinetuneSettings,
    scale: int,
    progress: bool,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Run (or resume) the mmengine Runner in ``work``; returns the final weights and run statistics."""
    from mmengine.runner import Runner

    import basicvsr_archival.datasets
    import basicvsr_archival.models  # noqa: F401  (registers datasets, transforms and networks)

    from .finetune_runner import (
        FinetuneProgressHook,
        freeze,
        quiet_scope_warnings,
        runner_config,
        trust_own_checkpoint,
    )

    resume_from = resume_checkpoint(work)
    info = probe_video(gt)
    cfg = runner_config(
        model_cfg, lq, gt, work, settings, scale, info.num_frames, (info.height, info.width),
        load_from=resume_from or work / INIT_NAME, resume=resume_from is not None,
    )  # fmt: skip
    with quiet_scope_warnings():
        runner = Runner.from_cfg(cfg)
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    freeze(model, settings.frozen)
    hook = FinetuneProgressHook(settings.max_seconds, progress)
    runner.register_hook(hook)
    with trust_own_checkpoint(resume_from):
        runner.train()
    final_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return final_state, dict(
        iters=int(runner.iter),
        resumed_from_iter=int(hook.start_iter),
        seconds=round(hook.seconds, 3),
        stopped_by="max_seconds" if hook.stopped_by_time else "max_iters",
        final_loss=hook.last_loss,
        running_psnr=hook.running_psnr,
    )


def finetune_video(
    model_cfg: Mapping[str, Any],
    lq_video: PathLike,
    gt_video: PathLike,
    work_dir: PathLike,
    settings: FinetuneSettings,
    base_checkpoint: PathLike | None = None,
    base_allow_extra_keys: bool = False,
    scale: int = 4,
    eval_max_seq_len: int | None = None,
    progress: bool = True,
    resume: bool = True,
    eval_overlap: int | None = None,
) -> FinetuneResult:
    """Fine-tune ``model_cfg`` (from ``base_checkpoint`` or from scratch) on one LR/GT video pair.

    Writes into ``work_dir``: ``init.pth`` (start weights), mmengine checkpoints and logs,
    ``finetuned.pth`` (the result) and ``finetune_stats.json``. Re-running with ``resume=True``
    continues an interrupted run from its latest checkpoint, or returns a finished one at once.
    Stats: iterations, seconds, stop reason, final loss, running PSNR and (``eval_frames`` > 0) the
    PSNR of the start and final weights on the evaluation frames (the held-out ones if any).
    """
    from .evaluate import restoration_psnr

    work = Path(work_dir)
    lq, gt = Path(lq_video), Path(gt_video)
    result_path, stats_path = work / FINETUNED_NAME, work / STATS_NAME
    if result_path.is_file() and stats_path.is_file():
        if not resume:
            raise FinetuneError(f"{work}: holds a finished fine-tuning run; resume or use another work dir")
        return FinetuneResult(result_path, json.loads(stats_path.read_text()))
    if (work / "last_checkpoint").is_file() and not resume:
        raise FinetuneError(f"{work}: holds checkpoints of an earlier run; resume it or use another work dir")
    work.mkdir(parents=True, exist_ok=True)
    init_state, init_info = _start_weights(
        work, model_cfg, base_checkpoint, base_allow_extra_keys, settings.seed
    )

    num_frames = probe_video(gt).num_frames
    eval_start = num_frames - settings.held_out_frames if settings.held_out_frames else 0
    eval_count = min(settings.eval_frames, num_frames - eval_start)
    chunks = dict(max_seq_len=eval_max_seq_len, overlap=eval_overlap)  # as the archive is restored

    def psnr(state: Mapping[str, torch.Tensor]) -> float | None:
        """PSNR of ``state`` on the evaluation frames."""
        return restoration_psnr(_model_with(model_cfg, state), lq, gt, eval_start, eval_count, **chunks)

    t0 = time.perf_counter()
    psnr_before = psnr(init_state)
    eval_seconds = time.perf_counter() - t0
    stats: dict[str, Any] = {"init": init_info, "iters": 0, "seconds": 0.0, "stopped_by": "max_iters"}
    final_state = init_state
    if settings.active_iters > 0:
        final_state, run_stats = _train(model_cfg, lq, gt, work, settings, scale, progress)
        stats.update(run_stats)
    t0 = time.perf_counter()
    psnr_after = psnr(final_state)
    eval_seconds += time.perf_counter() - t0
    stats.update(
        eval_frames=[eval_start, eval_start + eval_count] if eval_count else None,
        eval_held_out=bool(settings.held_out_frames),
        psnr_before=psnr_before,
        psnr_after=psnr_after,
        eval_seconds=round(eval_seconds, 3),
    )
    _save_atomic({"state_dict": final_state, "meta": {"finetune": stats}}, result_path)
    _write_json_atomic(stats, stats_path)
    return FinetuneResult(result_path, stats)
