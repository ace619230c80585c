"""Content-aware fine-tuning: train the SR model on (decoded LR, original HR) frames of one video.

The training itself is the project's training machinery, configured for one video: an mmengine
``Runner`` with the :class:`~basicvsr_archival.models.BasicVSR` restorer, the ``VideoFileDataset``
reading the LR/GT video pair with PyAV, the standard crop / flip pipeline, Adam and a cosine (or
constant) schedule, mmengine's checkpoint hook for resuming. Added here:

* :class:`FinetuneProgressHook`: a tqdm bar with the loss and a running PSNR of the training
  outputs, and the wall-clock budget: training stops once ``max_seconds`` have been spent (time
  spent before an interruption counts, it is stored with each checkpoint);
* the start weights: the base checkpoint (loaded with key / shape checks) or a seeded random
  initialisation, saved once as ``init.pth`` in the work dir and given to the Runner as ``load_from``;
* resuming: with checkpoints in the work dir the Runner resumes from the latest intact one, also in
  a moved work dir (:func:`~basicvsr_archival.engine.checkpoint.resume_checkpoint`); a finished
  run (``finetuned.pth`` + ``finetune_stats.json``) is returned without training again.

The SPyNet flow network is frozen with the restorer's ``fix_iter`` schedule when ``"spynet"`` is in
``frozen``; other frozen name fragments get ``lr_mult=0`` (their weights stay bit-identical, so a
delta model stores nothing for them).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from tqdm import tqdm

from basicvsr_archival.engine.checkpoint import resume_checkpoint
from basicvsr_archival.models.builder import build_restorer
from basicvsr_archival.utils.atomic import atomic_path, atomic_write_json
from basicvsr_archival.utils.ffmpeg import PathLike, probe_video

from .model_storage import (
    read_state_dict,
)
from .package import (
    ArchiveError,
)

FINETUNED_NAME = "finetuned.pth"
STATS_NAME = "finetune_stats.json"
INIT_NAME = "init.pth"
NEVER = 10**12  # fix_iter that keeps SPyNet frozen for the whole run
LR_SCHEDULES = ("cosine", "constant")
_INT_MINIMA = dict(
    max_iters=0, clip_length=2, patch_size=16, batch_size=1, num_workers=0, held_out_frames=0, eval_frames=0,
    checkpoint_interval=1, log_interval=1,
)  # fmt: skip

_FLOAT_RANGES = {  # name: (low, high, low allowed, wording)
    "max_seconds": (0.0, math.inf, False, "> 0"),
    "lr": (0.0, math.inf, False, "> 0"),
    "eta_min_ratio": (0.0, 1.0, True, "in [0, 1]"),
}


class FinetuneError(ArchiveError):
    """Invalid fine-tuning settings, an unusable base checkpoint or a work dir that cannot be resumed."""


@dataclass(frozen=True)
class FinetuneSettings:
    """Budget and recipe of the per-video fine-tuning (see the archival configs for meanings)."""

    enabled: bool = True
    max_iters: int = 2000
    max_seconds: float = 3600.0
    clip_length: int = 15
    patch_size: int = 256
    lr: float = 1e-4
    lr_schedule: str = "cosine"
    eta_min_ratio: float = 0.1
    batch_size: int = 1
    num_workers: int = 0
    augment: bool = False
    frozen: tuple[str, ...] = ("spynet",)
    held_out_frames: int = 0
    eval_frames: int = 10
    checkpoint_interval: int = 200
    log_interval: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        """Validate the fields."""
        for name, low in _INT_MINIMA.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise FinetuneError(f"finetune.{name} must be an int >= {low}, got {v!r}")
        for name, (low, high, low_ok, text) in _FLOAT_RANGES.items():
            v = getattr(self, name)
            number = isinstance(v, int | float) and not isinstance(v, bool)
            if not (number and (low < v or (low_ok and v == low)) and v <= high):
                raise FinetuneError(f"finetune.{name} must be a number {text}, got {v!r}")
        for name in ("enabled", "augment"):
            if not isinstance(getattr(self, name), bool):
                raise FinetuneError(f"finetune.{name} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise FinetuneError(f"finetune.seed must be an int, got {self.seed!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise FinetuneError(
                f"finetune.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )
        if not isinstance(self.frozen, list | tuple) or not all(isinstance(f, str) for f in self.frozen):
            raise FinetuneError(
                f"finetune.frozen must be a list of parameter name fragments, got {self.frozen!r}"
            )
        object.__setattr__(self, "frozen", tuple(self.frozen))

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> FinetuneSettings:
        """Build from a config mapping; unknown keys are an error."""
        unknown = sorted(set(cfg) - {f.name for f in fields(cls)})
        if unknown:
            raise FinetuneError(f"unknown finetune setting(s) {unknown}")
        return cls(**dict(cfg))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict."""
        d = asdict(self)
        d["frozen"] = list(self.frozen)
        return d

    @property
    def active_iters(self) -> int:
        """Iterations to run (0 when fine-tuning is disabled)."""
        return self.max_iters if self.enabled else 0


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


# ------------------------------------------------------------------------------------------ hook
class FinetuneProgressHook(Hook):
    """tqdm bar (loss, running PSNR of the training outputs), the wall-clock budget ``max_seconds``, freezing.

    Seconds spent are kept in the message hub (``finetune_seconds``), which mmengine stores in every
    checkpoint and restores on resume, so the budget spans interruptions. On resume the Runner's
    replay of already-seen batches is skipped (batches are random crops: replaying them only costs
    decoding time).
    """

    priority = "NORMAL"

    def __init__(
        self, max_seconds: float, progress: bool = True, frozen: Sequence[str] = (), psnr_window: int = 20
    ) -> None:
        self.max_seconds = float(max_seconds)
        self.frozen = tuple(frozen)
        self.progress = progress
        self.psnrs: deque[float] = deque(maxlen=psnr_window)
        self.last_loss: float | None = None
        self.seconds = 0.0
        self.stopped_by_time = False
        self.start_iter = 0
        self._offset = 0.0
        self._t0 = 0.0
        self._output: torch.Tensor | None = None
        self._handle: Any = None
        self._bar: tqdm | None = None

    @property
    def running_psnr(self) -> float | None:
        """Mean PSNR (dB) of the last training outputs."""
        return float(np.mean(self.psnrs)) if self.psnrs else None

    def before_train(self, runner: Any) -> None:
        """Start the clock and the bar; capture generator outputs; stop at once if the budget is spent."""
        loop = runner.train_loop
        self.start_iter = runner.iter
        self._offset = float(runner.message_hub.get_info("finetune_seconds", 0.0) or 0.0)
        self._t0 = time.perf_counter()
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        self._handle = model.generator.register_forward_hook(self._capture)
        for name, param in model.named_parameters():  # no gradients for frozen parts: faster backward
            if any(f in name for f in self.frozen):
                param.requires_grad_(False)
        self._bar = tqdm(
            total=runner.max_iters,
            initial=runner.iter,
            desc="fine-tuning",
            unit="it",
            disable=not self.progress,
        )
        if runner.iter > 0:
            loop.dataloader_iterator = _SkipReplay(loop.dataloader_iterator, runner.iter)
        if self._offset >= self.max_seconds:
            loop.stop_training = True
            self.stopped_by_time = True

    def _capture(self, module: Any, args: Any, output: torch.Tensor) -> None:
        """Forward hook: keep the last generator output (detached)."""
        self._output = output.detach()

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Mapping[str, Any] | None = None
    ) -> None:
        """Update time, loss, running PSNR and the bar; stop when the budget is spent."""
        self.seconds = self._offset + time.perf_counter() - self._t0
        runner.message_hub.update_info("finetune_seconds", self.seconds)
        if outputs and "loss" in outputs:
            loss = outputs["loss"]
            self.last_loss = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        gt = _batch_gt(data_batch)
        if self._output is not None and gt is not None and gt.shape == self._output.shape:
            mse = torch.mean((self._output.float().cpu().clamp(0, 1) - gt.float()) ** 2).item()
            self.psnrs.append(10 * math.log10(1.0 / max(mse, 1e-12)))
        self._output = None
        if self._bar is not None:
            post = {"loss": f"{self.last_loss:.4f}" if self.last_loss is not None else "-"}
            if self.running_psnr is not None:
                post["psnr"] = f"{self.running_psnr:.2f}"
            post["budget_left"] = f"{max(self.max_seconds - self.seconds, 0):.0f}s"
            self._bar.set_postfix(post, refresh=False)
            self._bar.update(1)
        if self.seconds >= self.max_seconds:
            runner.train_loop.stop_training = True
            self.stopped_by_time = True

    def after_train(self, runner: Any) -> None:
        """Close the bar and remove the forward hook."""
        if self._bar is not None:
            self._bar.close()
        if self._handle is not None:
            self._handle.remove()


def _batch_gt(data_batch: Any) -> torch.Tensor | None:
    """GT tensor (n, t, 3, H, W) of a collated batch, if it has one."""
    if not isinstance(data_batch, Mapping):
        return None
    samples = data_batch.get("data_samples")
    if isinstance(samples, Mapping):
        return samples.get("gt")
    if isinstance(samples, Sequence) and samples and all(isinstance(s, Mapping) for s in samples):
        gts = [s.get("gt") for s in samples]
        return torch.stack(gts) if all(g is not None for g in gts) else None
    return None


class _SkipReplay:
    """Dataloader iterator whose first ``n`` ``next()`` calls return None without loading data."""

    def __init__(self, inner: Any, n: int) -> None:
        self.inner, self.n = inner, n

    def __iter__(self) -> _SkipReplay:
        return self

    def __next__(self) -> Any:
        if self.n > 0:
            self.n -= 1
            return None
        return next(self.inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _ScopeWarningFilter(logging.Filter):
    """Drops mmengine's notices that a registry lacks a ``basicvsr_archival`` child (the fallback is fine)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to search registry with scope" not in record.getMessage()


@contextlib.contextmanager
def _quiet_scope_warnings() -> Iterator[None]:
    """Silence the registry-scope fallback notices of the current mmengine logger while building a Runner."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    filt = _ScopeWarningFilter()
    logger.addFilter(filt)
    try:
        yield
    finally:
        logger.removeFilter(filt)


@contextlib.contextmanager
def _trust_own_checkpoint(path: Path | None) -> Iterator[None]:
    """Let ``torch.load`` (weights-only by default) read this run's own mmengine checkpoint when resuming.

    mmengine stores its message hub (``HistoryBuffer`` objects holding numpy arrays) in checkpoints;
    the globals that needs are allowed for the duration of the block. Only checkpoints this code wrote
    into its work dir are resumed from.
    """
    if path is None or not path.is_file():
        yield
        return
    allowed = []
    for name in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)):
        module, _, attr = name.rpartition(".")
        try:
            allowed.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):
            continue  # torch.load then reports the unknown global itself
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: scalars are rebuilt via getattr(np.dtypes, ...)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    with torch.serialization.safe_globals(allowed):
        yield


# ------------------------------------------------------------------------------------------ runner config
def runner_config(
    model_cfg: Mapping[str, Any],
    lq_video: Path,
    gt_video: Path,
    work_dir: Path,
    settings: FinetuneSettings,
    scale: int,
    num_frames: int,
    gt_size: tuple[int, int],
    load_from: Path | None,
    resume: bool,
) -> dict[str, Any]:
    """mmengine Runner config fine-tuning ``model_cfg`` on the LR/GT video pair (no validation loop)."""
    height, width = gt_size
    patch = min(settings.patch_size, height, width) // scale * scale
    if patch < scale * 8:
        raise FinetuneError(f"{gt_video}: frames {width}x{height} are too small for fine-tuning patches")
    train_frames = num_frames - settings.held_out_frames
    clip = min(settings.clip_length, train_frames)
    if train_frames < 2:
        raise FinetuneError(f"{gt_video}: {num_frames} frames leave too few for training")
    pipeline: list[dict[str, Any]] = [
        dict(type="GenerateSegmentIndices", interval_list=[1], num_input_frames=clip),
        dict(type="LoadVideoFrames", key="gt"),
        dict(type="LoadVideoFrames", key="lq"),
        dict(type="PairedRandomCrop", gt_patch_size=patch, scale=scale),
    ]
    if settings.augment:
        pipeline += [
            dict(type="Flip", keys=["lq", "gt"], flip_ratio=0.5, direction="horizontal"),
            dict(type="Flip", keys=["lq", "gt"], flip_ratio=0.5, direction="vertical"),
            dict(type="RandomTransposeHW", keys=["lq", "gt"], transpose_ratio=0.5),
        ]
    pipeline.append(dict(type="PackInputs"))
    model = json.loads(json.dumps(dict(model_cfg), default=list))
    frozen_spynet = any("spynet" in f for f in settings.frozen)
    model["train_cfg"] = dict(model.get("train_cfg") or {}, fix_iter=NEVER if frozen_spynet else 0)
    others = [f for f in settings.frozen if "spynet" not in f]
    iters = max(settings.max_iters, 1)
    scheduler = None
    if settings.lr_schedule == "cosine":
        eta_min = settings.lr * settings.eta_min_ratio
        scheduler = dict(
            type="CosineAnnealingLR", by_epoch=False, T_max=iters, eta_min=eta_min, begin=0, end=iters
        )
    return dict(
        default_scope="basicvsr_archival",
        model=model,
        work_dir=str(work_dir),
        experiment_name=f"finetune_{time.strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(3)}",
        train_dataloader=dict(
            batch_size=settings.batch_size,
            num_workers=settings.num_workers,
            persistent_workers=settings.num_workers > 0,
            collate_fn=dict(type="default_collate"),
            sampler=dict(type="InfiniteSampler", shuffle=True, seed=settings.seed),
            dataset=dict(
                type="VideoFileDataset",
                gt_videos=[str(gt_video)],
                lq_videos=[str(lq_video)],
                clip_length=num_frames,
                num_input_frames=clip,
                num_val_frames=settings.held_out_frames,
                scale=scale,
                test_mode=False,
                pipeline=pipeline,
            ),
        ),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=iters),
        optim_wrapper=dict(
            type="OptimWrapper",
            optimizer=dict(type="Adam", lr=settings.lr, betas=(0.9, 0.99)),
            paramwise_cfg=dict(custom_keys={k: dict(lr_mult=0.0) for k in others}),
        ),
        param_scheduler=scheduler,
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=settings.log_interval),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(
                type="CheckpointHook",
                interval=settings.checkpoint_interval,
                by_epoch=False,
                save_optimizer=True,
                max_keep_ckpts=2,
                save_last=True,
            ),
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        log_processor=dict(type="LogProcessor", window_size=settings.log_interval, by_epoch=False),
        visualizer=dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")]),
        env_cfg=dict(
            cudnn_benchmark=False,
            mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
            dist_cfg=dict(backend="gloo"),
        ),
        randomness=dict(seed=settings.seed),
        log_level="ERROR",  # progress shows in the tqdm bar; scalars go to the work dir's vis_data
        load_from=str(load_from) if load_from is not None else None,
        resume=resume,
    )


# ------------------------------------------------------------------------------------------ evaluation
def _model_with(model_cfg: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """Restorer of ``model_cfg`` holding ``state`` (strict), in eval mode on the CPU."""
    return build_restorer(model_cfg, state).eval()


# ------------------------------------------------------------------------------------------ main entry
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
    from mmengine.config import Config
    from mmengine.runner import Runner

    import basicvsr_archival.datasets
    import basicvsr_archival.models  # noqa: F401  (registers datasets, transforms and networks)

    from .evaluate import restoration_psnr

    work = Path(work_dir)
    lq, gt = Path(lq_video), Path(gt_video)
    result_path, stats_path, init_path = work / FINETUNED_NAME, work / STATS_NAME, work / INIT_NAME
    if result_path.is_file() and stats_path.is_file():
        if not resume:
            raise FinetuneError(f"{work}: holds a finished fine-tuning run; resume or use another work dir")
        return FinetuneResult(result_path, json.loads(stats_path.read_text()))
    if (work / "last_checkpoint").is_file() and not resume:
        raise FinetuneError(f"{work}: holds checkpoints of an earlier run; resume it or use another work dir")
    resume_from = resume_checkpoint(work)
    work.mkdir(parents=True, exist_ok=True)
    if not init_path.is_file():
        state, init_info = initial_state(model_cfg, base_checkpoint, base_allow_extra_keys, settings.seed)
        _save_atomic({"state_dict": state, "meta": {"init": init_info}}, init_path)
    init = torch.load(init_path, map_location="cpu", weights_only=True)
    init_state, init_info = init["state_dict"], init.get("meta", {}).get("init", {})

    info = probe_video(gt)
    num_frames = info.num_frames
    eval_start = num_frames - settings.held_out_frames if settings.held_out_frames else 0
    eval_count = min(settings.eval_frames, num_frames - eval_start)
    chunks = dict(max_seq_len=eval_max_seq_len, overlap=eval_overlap)  # as the archive is restored
    t0 = time.perf_counter()
    psnr_before = restoration_psnr(
        _model_with(model_cfg, init_state), lq, gt, eval_start, eval_count, **chunks
    )
    eval_seconds = time.perf_counter() - t0

    stats: dict[str, Any] = {"init": init_info, "iters": 0, "seconds": 0.0, "stopped_by": "max_iters"}
    final_state = init_state
    if settings.active_iters > 0:
        cfg = runner_config(
            model_cfg, lq, gt, work, settings, scale, num_frames, (info.height, info.width),
            load_from=resume_from or init_path, resume=resume_from is not None,
        )  # fmt: skip
        with _quiet_scope_warnings():
            runner = Runner.from_cfg(Config(cfg))
        hook = FinetuneProgressHook(settings.max_seconds, progress, frozen=settings.frozen)
        runner.register_hook(hook)
        with _trust_own_checkpoint(resume_from):
            runner.train()
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        final_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        stats.update(
            iters=int(runner.iter),
            resumed_from_iter=int(hook.start_iter),
            seconds=round(hook.seconds, 3),
            stopped_by="max_seconds" if hook.stopped_by_time else "max_iters",
            final_loss=hook.last_loss,
            running_psnr=hook.running_psnr,
        )
    t0 = time.perf_counter()
    psnr_after = restoration_psnr(
        _model_with(model_cfg, final_state), lq, gt, eval_start, eval_count, **chunks
    )
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
