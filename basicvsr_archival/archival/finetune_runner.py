"""The mmengine Runner of the per-video fine-tuning: its config, the frozen parameters, the progress hook.

The recipe (loop, optimizer, hooks, logging) is the config file
``configs/archival/_base_/finetune_runner.py``; :func:`runner_config` fills in one job from its
:class:`FinetuneSettings`. :func:`freeze` is the one place where ``finetune.frozen`` acts.
:class:`FinetuneProgressHook` shows progress and enforces the wall-clock budget across interruptions.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from tqdm import tqdm

from .finetune_settings import FinetuneError, FinetuneSettings

RUNNER_RECIPE = Path(__file__).resolve().parents[2] / "configs" / "archival" / "_base_" / "finetune_runner.py"
NEVER = 10**12  # fix_iter that keeps SPyNet frozen for the whole run
RNG_KEY = "finetune_rng"  # checkpoint entry: generator states, so a resumed run draws the same batches


# ------------------------------------------------------------------------------------------ runner config
def _train_pipeline(settings: FinetuneSettings, clip: int, patch: int, scale: int) -> list[dict[str, Any]]:
    """Pipeline of one training sample: an LR/GT clip, a paired random crop, flips if ``augment``."""
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
    return pipeline


class TrainVideo(NamedTuple):
    """One LR/GT training pair with the GT's frame count and size (height, width)."""

    lq: Path
    gt: Path
    num_frames: int
    gt_size: tuple[int, int]


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
) -> Config:
    """The recipe :data:`RUNNER_RECIPE` with this job filled in: ``model_cfg`` on the LR/GT video pair."""
    video = TrainVideo(Path(lq_video), Path(gt_video), num_frames, gt_size)
    return videos_runner_config(model_cfg, [video], work_dir, settings, scale, load_from, resume)


def videos_runner_config(
    model_cfg: Mapping[str, Any],
    videos: Sequence[TrainVideo],
    work_dir: Path,
    settings: FinetuneSettings,
    scale: int,
    load_from: Path | None,
    resume: bool,
) -> Config:
    """The recipe with ``model_cfg`` trained on clips sampled from all ``videos`` (each video one item).

    Every video is one dataset item (its training frames), so the shuffled infinite sampler draws
    the videos equally often; patches and clip length fit the smallest / shortest video.
    """
    for v in videos:
        height, width = v.gt_size
        if min(settings.patch_size, height, width) // scale * scale < scale * 8:
            raise FinetuneError(f"{v.gt}: frames {width}x{height} are too small for fine-tuning patches")
        if v.num_frames - settings.held_out_frames < 2:
            raise FinetuneError(f"{v.gt}: {v.num_frames} frames leave too few for training")
    patch = min(settings.patch_size, *(min(v.gt_size) for v in videos)) // scale * scale
    clip = min(settings.clip_length, *(v.num_frames - settings.held_out_frames for v in videos))
    iters = max(settings.max_iters, 1)
    scheduler = None
    if settings.lr_schedule == "cosine":
        scheduler = dict(T_max=iters, eta_min=settings.lr * settings.eta_min_ratio, end=iters)
    job = dict(
        model=json.loads(json.dumps(dict(model_cfg), default=list)),
        work_dir=str(work_dir),
        experiment_name=f"finetune_{time.strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(3)}",
        train_dataloader=dict(
            batch_size=settings.batch_size,
            num_workers=settings.num_workers,
            persistent_workers=settings.num_workers > 0,
            sampler=dict(seed=settings.seed),
            dataset=dict(
                gt_videos=[str(v.gt) for v in videos],
                lq_videos=[str(v.lq) for v in videos],
                clip_length=max(v.num_frames for v in videos),
                num_input_frames=clip,
                num_val_frames=settings.held_out_frames,
                scale=scale,
                pipeline=_train_pipeline(settings, clip, patch, scale),
            ),
        ),
        train_cfg=dict(max_iters=iters),
        optim_wrapper=dict(optimizer=dict(lr=settings.lr)),
        param_scheduler=scheduler,
        default_hooks=dict(
            logger=dict(interval=settings.log_interval),
            checkpoint=dict(interval=settings.checkpoint_interval),
        ),
        log_processor=dict(window_size=settings.log_interval),
        randomness=dict(seed=settings.seed),
        load_from=str(load_from) if load_from is not None else None,
        resume=resume,
    )
    if not RUNNER_RECIPE.is_file():  # configs/ ships with a source checkout, not inside the package
        raise FinetuneError(f"{RUNNER_RECIPE}: fine-tuning recipe not found (install from a source checkout)")
    cfg = Config.fromfile(RUNNER_RECIPE)
    cfg.merge_from_dict(job)  # nested dicts merge into the recipe's; None (constant lr) replaces
    return cfg


def freeze(model: torch.nn.Module, frozen: Sequence[str]) -> list[str]:
    """Keep the parameters whose names contain one of the ``frozen`` fragments at their start values.

    They get no gradients (a faster backward; Adam skips them, so they stay bit-identical and a
    delta model stores nothing for them). The restorer's SPyNet schedule is set to agree: fixed
    for the whole run when a frozen parameter is one it fixes (SPyNet is then fixed as a whole),
    otherwise never (it would turn gradients back on for the whole generator). Returns the names.
    """
    from basicvsr_archival.models.basicvsr import FIXED_PARAM_KEYS

    names = [name for name, _ in model.named_parameters() if any(f in name for f in frozen)]
    if names and len(names) == len(list(model.parameters())):
        raise FinetuneError(f"finetune.frozen {list(frozen)} freezes every parameter; set enabled=False")
    for name, param in model.named_parameters():
        if name in names:
            param.requires_grad_(False)
    fixes_spynet = any(k in name for name in names for k in FIXED_PARAM_KEYS)
    model.fix_iter = NEVER if fixes_spynet else 0
    model.train_cfg["fix_iter"] = model.fix_iter
    return names


# ------------------------------------------------------------------------------------------ hook
class FinetuneProgressHook(Hook):
    """tqdm bar (loss, running PSNR of the training outputs) and the wall-clock budget ``max_seconds``.

    Seconds spent are kept in the message hub (``finetune_seconds``), which mmengine stores in every
    checkpoint and restores on resume, so the budget spans interruptions. On resume the Runner's
    replay of already-seen batches is skipped (batches are random crops: replaying them only costs
    decoding time).
    """

    priority = "NORMAL"

    def __init__(self, max_seconds: float, progress: bool = True, psnr_window: int = 20) -> None:
        self.max_seconds = float(max_seconds)
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
        self._rng: dict[str, Any] | None = None

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
        self._bar = tqdm(
            total=runner.max_iters,
            initial=runner.iter,
            desc="fine-tuning",
            unit="it",
            disable=not self.progress,
        )
        if runner.iter > 0:
            self._skip_replay(loop, runner.iter)
        if self._offset >= self.max_seconds:
            loop.stop_training = True
            self.stopped_by_time = True

    def _skip_replay(self, loop: Any, done: int) -> None:
        """Skip the loop's replay of ``done`` batches; single-process: continue the sampler and generators.

        Without workers the sampler's indices are drawn (not loaded) and the generator states of the
        checkpoint restored, so the resumed run trains on the batches of an uninterrupted one.
        """
        inner = getattr(loop.dataloader_iterator, "_iterator", None)
        exact = (
            self._rng is not None and hasattr(inner, "_next_index") and not getattr(inner, "_num_workers", 1)
        )
        advance = inner._next_index if exact else None
        loop.dataloader_iterator = _SkipReplay(loop.dataloader_iterator, done, advance)
        if exact:
            set_rng_state(self._rng)

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Store the random generators' states (crop / frame choices) with the checkpoint."""
        checkpoint[RNG_KEY] = rng_state()

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """Keep the random generators' states of a checkpoint resumed from (restored in ``before_train``)."""
        self._rng = checkpoint.get(RNG_KEY)

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


def rng_state() -> dict[str, Any]:
    """States of Python's, NumPy's and torch's (CPU) global generators, as tensors and plain numbers."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss_next],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the generators' states saved by :func:`rng_state`."""
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(int(x) for x in internal.tolist()), gauss_next))
    torch.set_rng_state(state["torch"])


class _SkipReplay:
    """Dataloader iterator whose first ``n`` ``next()`` calls return None without loading data.

    With ``advance`` (the single-process loader's next batch of sampler indices) each skipped call
    draws the batch's indices without loading it, so the sampler continues where it stopped.
    """

    def __init__(self, inner: Any, n: int, advance: Any = None) -> None:
        self.inner, self.n, self.advance = inner, n, advance

    def __iter__(self) -> _SkipReplay:
        return self

    def __next__(self) -> Any:
        if self.n > 0:
            self.n -= 1
            if self.advance is not None:
                self.advance()
            return None
        return next(self.inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _ScopeWarningFilter(logging.Filter):
    """Drops mmengine's notices that a registry lacks a ``basicvsr_archival`` child (the fallback is fine)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Failed to search registry with scope" not in record.getMessage()


@contextlib.contextmanager
def quiet_scope_warnings() -> Iterator[None]:
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
def trust_own_checkpoint(path: Path | None) -> Iterator[None]:
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
