"""Content-aware fine-tuning: train the SR model on (decoded LR, original HR) frames of one video or
of a cluster of videos (:func:`finetune_cluster`: clips sampled from all of them; one video is the
one-pair case, :func:`finetune_video`).

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
  without data-loader workers a resumed run draws the batches of an uninterrupted one (the
  sampler is advanced and the generator states are stored with each checkpoint), so it ends with
  the same weights;
* the PSNR of the start and final weights on the evaluation frames.

Parameters named by ``frozen`` stay bit-identical (:func:`~.finetune_runner.freeze`), so a delta
model stores nothing for them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
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
CLUSTER_JOB_NAME = "cluster_job.json"  # the videos and budget a cluster work dir belongs to


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
    pairs: Sequence[tuple[Path, Path]],
    work: Path,
    settings: FinetuneSettings,
    scale: int,
    progress: bool,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Run (or resume) the mmengine Runner in ``work`` on clips of all ``pairs``; final weights, stats."""
    from mmengine.runner import Runner

    import basicvsr_archival.datasets
    import basicvsr_archival.models  # noqa: F401  (registers datasets, transforms and networks)

    from .finetune_runner import (
        FinetuneProgressHook,
        TrainVideo,
        freeze,
        quiet_scope_warnings,
        trust_own_checkpoint,
        videos_runner_config,
    )

    resume_from = resume_checkpoint(work)
    videos = []
    for lq, gt in pairs:
        info = probe_video(gt)
        videos.append(TrainVideo(lq, gt, info.num_frames, (info.height, info.width)))
    cfg = videos_runner_config(
        model_cfg, videos, work, settings, scale,
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


def cluster_iters(iters_per_video: int, num_videos: int, max_iters: int | None = None) -> int:
    """Iterations of a cluster's fine-tuning: ``iters_per_video * num_videos``, at most ``max_iters``."""
    for name, v in (("iters_per_video", iters_per_video), ("max_iters", max_iters)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise FinetuneError(f"cluster.{name} must be an int >= 0, got {v!r}")
    total = iters_per_video * num_videos
    return total if max_iters is None else min(total, max_iters)


def _eval_range(gt: Path, settings: FinetuneSettings) -> tuple[int, int]:
    """First frame and count of the evaluation frames of ``gt`` (the held-out ones if any)."""
    num_frames = probe_video(gt).num_frames
    eval_start = num_frames - settings.held_out_frames if settings.held_out_frames else 0
    return eval_start, min(settings.eval_frames, num_frames - eval_start)


def _finished(work: Path, resume: bool) -> FinetuneResult | None:
    """The finished run in ``work`` (resume), None for a new or interrupted one; refuses to overwrite."""
    result_path, stats_path = work / FINETUNED_NAME, work / STATS_NAME
    if result_path.is_file() and stats_path.is_file():
        if not resume:
            raise FinetuneError(f"{work}: holds a finished fine-tuning run; resume or use another work dir")
        return FinetuneResult(result_path, json.loads(stats_path.read_text()))
    if (work / "last_checkpoint").is_file() and not resume:
        raise FinetuneError(f"{work}: holds checkpoints of an earlier run; resume it or use another work dir")
    return None


def _finetune_pairs(
    model_cfg: Mapping[str, Any],
    pairs: Sequence[tuple[Path, Path]],
    work: Path,
    settings: FinetuneSettings,
    start: tuple[PathLike | None, bool],
    scale: int,
    chunks: Mapping[str, int | None],
    progress: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train on all ``pairs`` (``settings.max_iters``), evaluating before/after on each; saves the result.

    ``start``: (base checkpoint, allow extra keys). Returns the run's statistics and, per pair, its
    evaluation frames and PSNR before and after (``chunks``: restoration chunking, as at restore).
    """
    from .evaluate import restoration_psnr

    work.mkdir(parents=True, exist_ok=True)
    init_state, init_info = _start_weights(work, model_cfg, start[0], start[1], settings.seed)
    ranges = [_eval_range(gt, settings) for _, gt in pairs]

    def psnrs(state: Mapping[str, torch.Tensor]) -> list[float | None]:
        """PSNR of ``state`` on the evaluation frames of every pair."""
        model = _model_with(model_cfg, state)
        return [restoration_psnr(model, lq, gt, *r, **chunks) for (lq, gt), r in zip(pairs, ranges)]

    t0 = time.perf_counter()
    before = psnrs(init_state)
    eval_seconds = time.perf_counter() - t0
    stats: dict[str, Any] = {"init": init_info, "iters": 0, "seconds": 0.0, "stopped_by": "max_iters"}
    final_state = init_state
    if settings.active_iters > 0:
        final_state, run_stats = _train(model_cfg, pairs, work, settings, scale, progress)
        stats.update(run_stats)
    t0 = time.perf_counter()
    after = psnrs(final_state)
    stats["eval_seconds"] = round(eval_seconds + time.perf_counter() - t0, 3)
    per_video = [
        dict(eval_frames=[s, s + n] if n else None, psnr_before=b, psnr_after=a)
        for (s, n), b, a in zip(ranges, before, after)
    ]
    return {**stats, "state": final_state}, per_video


def _save_result(work: Path, state: Mapping[str, torch.Tensor], stats: dict[str, Any]) -> FinetuneResult:
    """Write ``finetuned.pth`` (the weights, stats in its meta) and ``finetune_stats.json``; the result."""
    _save_atomic({"state_dict": dict(state), "meta": {"finetune": stats}}, work / FINETUNED_NAME)
    _write_json_atomic(stats, work / STATS_NAME)
    return FinetuneResult(work / FINETUNED_NAME, stats)


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
    work = Path(work_dir)
    done = _finished(work, resume)
    if done is not None:
        return done
    chunks = dict(max_seq_len=eval_max_seq_len, overlap=eval_overlap)  # as the archive is restored
    start = (base_checkpoint, base_allow_extra_keys)
    pair = [(Path(lq_video), Path(gt_video))]
    stats, (video,) = _finetune_pairs(model_cfg, pair, work, settings, start, scale, chunks, progress)
    state = stats.pop("state")
    eval_seconds = stats.pop("eval_seconds")
    stats.update(eval_frames=video["eval_frames"], eval_held_out=bool(settings.held_out_frames))
    stats.update(psnr_before=video["psnr_before"], psnr_after=video["psnr_after"], eval_seconds=eval_seconds)
    return _save_result(work, state, stats)


def _check_cluster_job(work: Path, pairs: Sequence[tuple[Path, Path]], iters: int) -> None:
    """Record the videos (frames, size, bytes) and budget in ``work``; refuse the work dir of another job."""
    videos = []
    for lq, gt in pairs:
        info = probe_video(gt)
        videos.append([info.num_frames, info.height, info.width, lq.stat().st_size, gt.stat().st_size])
    job = {"iters": iters, "videos": videos}
    path = work / CLUSTER_JOB_NAME
    if path.is_file():
        if json.loads(path.read_text()) != job:
            raise FinetuneError(
                f"{work}: holds a cluster fine-tuning of other videos or budget; use another work dir"
            )
        return
    work.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(job, path)


def finetune_cluster(
    model_cfg: Mapping[str, Any],
    pairs: Sequence[tuple[PathLike, PathLike]],
    work_dir: PathLike,
    settings: FinetuneSettings,
    iters_per_video: int,
    max_iters: int | None = None,
    base_checkpoint: PathLike | None = None,
    base_allow_extra_keys: bool = False,
    scale: int = 4,
    threads: int | None = 1,
    eval_max_seq_len: int | None = None,
    eval_overlap: int | None = None,
    progress: bool = True,
    resume: bool = True,
) -> FinetuneResult:
    """Fine-tune one model on clips sampled from all of a cluster's (LR, GT) video ``pairs``.

    The budget is :func:`cluster_iters` (``iters_per_video * len(pairs)``, capped by ``max_iters``);
    ``settings.max_seconds`` stays a wall-clock safety cap (its stop is recorded as ``stopped_by``).
    Torch runs on ``threads`` intra-op threads (None: unchanged). Work dir, resuming and result files
    as :func:`finetune_video`; stats add ``budget`` and ``videos`` (per pair, in order: evaluation
    frames, PSNR before / after) and give the mean PSNR before / after over the pairs.
    """
    from basicvsr_archival.utils.threads import pinned_threads

    if not pairs:
        raise FinetuneError(f"{work_dir}: a cluster fine-tuning needs at least one (LR, GT) video pair")
    work = Path(work_dir)
    iters = cluster_iters(iters_per_video, len(pairs), max_iters)
    paths = [(Path(lq), Path(gt)) for lq, gt in pairs]
    for path in (p for pair in paths for p in pair):
        if not path.is_file():
            raise FinetuneError(f"{path}: video of the cluster fine-tuning not found")
    done = _finished(work, resume)
    _check_cluster_job(work, paths, iters)
    if done is not None:
        return done
    run_settings = replace(settings, max_iters=iters)
    chunks = dict(max_seq_len=eval_max_seq_len, overlap=eval_overlap)
    start = (base_checkpoint, base_allow_extra_keys)
    with pinned_threads(threads):
        stats, videos = _finetune_pairs(model_cfg, paths, work, run_settings, start, scale, chunks, progress)
    state = stats.pop("state")
    before, after = [v["psnr_before"] for v in videos], [v["psnr_after"] for v in videos]
    stats.update(
        budget=dict(iters_per_video=iters_per_video, videos=len(pairs), max_iters=max_iters, iters=iters),
        threads=threads,
        videos=videos,
        eval_held_out=bool(settings.held_out_frames),
        psnr_before=float(np.mean(before)) if None not in before else None,
        psnr_after=float(np.mean(after)) if None not in after else None,
    )
    return _save_result(work, state, stats)
