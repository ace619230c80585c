"""Inference API: build a restorer from a config, read frames, restore them streaming, write the result.

* :func:`init_model` builds ``cfg.model`` and loads an (official-layout) checkpoint strictly;
* :func:`read_frame_source` opens a folder of image frames or any ffmpeg-readable video lazily
  (:mod:`.frame_source`);
* :func:`restore_video_frames` restores frames in overlapping chunks (recurrent, see
  :mod:`.streaming`) or window by window (sliding window) and yields RGB uint8 output frames,
  holding only a chunk / window in memory;
* :func:`restoration_video_inference` writes a folder of PNG frames or an x264 video (with the input
  video's audio), atomically.

Every error meant for a user is an :class:`InferenceError` with a one-line message naming the file.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from torch import nn
from tqdm import tqdm

from basicvsr_archival.errors import (  # noqa: F401  (re-exported by basicvsr_archival.apis)
    CheckpointError,
    CheckpointMismatchError,
    FrameSourceError,
    InferenceError,
    OutputExistsError,
    OutputPathError,
    first_line,
)
from basicvsr_archival.models.backends import BackendSettings, apply_backend, preferred_memory_format
from basicvsr_archival.models.builder import build_restorer
from basicvsr_archival.utils.ffmpeg import MediaError
from basicvsr_archival.utils.output import check_output_path as _check_output_path
from basicvsr_archival.utils.output import (
    is_video_output,  # noqa: F401  (re-exported by basicvsr_archival.apis)
    make_temp_dir,
    write_png,
)

from .frame_source import (  # noqa: F401  (re-exported by basicvsr_archival.apis)
    FOLDER_FPS,
    IMAGE_EXTENSIONS,
    FrameSource,
    read_frame_source,
    synthetic_frame_source,
)
from .streaming import (
    OverlapError,
    overlapped_chunks,
    release_free_memory,
    resolve_overlap,
    window_indices,  # noqa: F401  (re-exported by basicvsr_archival.apis)
    write_video,
)
from .streaming import sliding_windows as _sliding_windows

PathLike = str | os.PathLike
logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")


# ---------------------------------------------------------------------------------------- model
def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` -> 'cuda' if available else 'cpu'; validate 'cpu', 'cuda' or 'cuda:N' (InferenceError)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InferenceError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise InferenceError(f"unsupported device {device!r}: use cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InferenceError(f"device {device!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InferenceError(
                f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA devices)"
            )
    return dev


def _load_config(config: PathLike | Config) -> Config:
    """Return ``config`` as an mmengine ``Config`` (read from a file path if needed)."""
    if isinstance(config, Config):
        return config
    path = Path(config)
    if not path.is_file():
        raise InferenceError(f"{path}: config file not found")
    try:
        return Config.fromfile(str(path))
    except Exception as exc:  # mmengine raises many kinds (SyntaxError, KeyError, ...)
        raise InferenceError(f"{path}: cannot read config ({first_line(exc)})") from exc


def init_model(
    config: PathLike | Config,
    checkpoint: PathLike | None = None,
    device: str | torch.device | None = None,
    channels_last: bool | None = None,
    backend: str = "auto",
    backend_settings: BackendSettings | None = None,
) -> nn.Module:
    """Build ``cfg.model`` from a config, load ``checkpoint`` strictly, move to ``device``, set eval mode.

    ``checkpoint=None`` keeps the random initialisation. A checkpoint whose keys or shapes do not fit
    the config raises :class:`CheckpointMismatchError`. The config is stored as ``model.cfg``.
    ``backend`` ('auto', 'cpu_kernels' or 'torch', ``models/backends``) is applied on purpose:
    'cpu_kernels' gives the network fused float32 CPU inference forwards configured by
    ``backend_settings`` (default ``BackendSettings.from_env()``); 'auto' takes it on the CPU where
    the C kernels build, else plain torch (always on CUDA). ``channels_last`` stores the convolution
    weights in NHWC order, so every convolution (and the fused deformable convolution) runs on NHWC
    activations; ``None`` (default) picks the faster layout for the backend and ``device``
    (:func:`~basicvsr_archival.models.backends.preferred_memory_format`). Same parameters and state
    dict either way.
    """
    cfg = _load_config(config)
    dev = resolve_device(device)
    if "model" not in cfg:
        raise InferenceError(f"{getattr(cfg, 'filename', None) or 'config'}: has no 'model' entry")
    model = build_restorer(cfg.model, checkpoint)
    model.cfg = cfg
    model.to(dev)
    settings = BackendSettings.from_env() if backend_settings is None else backend_settings
    if channels_last is None:
        channels_last = preferred_memory_format(backend, dev, settings) == torch.channels_last
    if channels_last:
        model.to(memory_format=torch.channels_last)
    apply_backend(model, backend, settings)
    model.eval()
    return model


# ---------------------------------------------------------------------------------------- restoration
def _autocast(precision: str, device: torch.device) -> Any:
    """Context manager running the model in ``precision`` ('fp32' = plain float32)."""
    if precision not in PRECISIONS:
        raise InferenceError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    if precision == "bf16":
        from basicvsr_archival.models.ops.fast_conv import cpu_has_native_bf16

        if not cpu_has_native_bf16():
            logger.warning(
                "this CPU has no native bfloat16 (no AVX512-BF16/AMX): bf16 runs ~10x slower than fp32 here"
            )
        return torch.autocast("cpu", dtype=dtype)
    raise InferenceError("precision fp16 needs a CUDA device: use bf16 or fp32 on the CPU")


def _to_tensor(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Stack RGB uint8 (H, W, 3) frames into a float (1, t, 3, H, W) tensor in [0, 1] on ``device``."""
    h, w = frames[0].shape[:2]
    for frame in frames:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape != (h, w, 3):
            raise InferenceError(
                f"frames must be uint8 ({h}, {w}, 3) like the first, got {frame.dtype} {frame.shape}"
            )
    batch = torch.from_numpy(np.stack(frames)).to(device)  # uint8 (t, H, W, 3): 4x less to transfer
    return batch.permute(0, 3, 1, 2).unsqueeze(0).float().div_(255.0)


def _to_frames(output: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) model output in [0, 1] -> RGB uint8 (t, H, W, 3) numpy frames."""
    out = output.detach().float().reshape(-1, *output.shape[-3:])
    out = out.clamp_(0, 1).mul_(255.0).round_().to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _run_model(model: nn.Module, lq: torch.Tensor) -> torch.Tensor:
    """Model output (n, t, 3, H, W) (or (n, 3, H, W) for single-frame models) for ``lq`` (n, t, 3, h, w)."""
    if isinstance(model, BaseModel):
        return model(lq, mode="tensor")
    return model(lq)


def restore_video_frames(
    model: nn.Module,
    source: Iterable[np.ndarray],
    max_seq_len: int | None = None,
    window_size: int = 0,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    progress: bool = True,
    overlap: int | None = None,
) -> Iterator[np.ndarray]:
    """Restore RGB uint8 (h, w, 3) frames, yielding RGB uint8 (H, W, 3) output frames in order (streaming).

    Recurrent mode (``window_size=0``): the frames go through the model in chunks of at most
    ``max_seq_len`` frames (None = the whole sequence at once), each made of core frames plus up to
    ``overlap`` frames of context on each side whose outputs are dropped, so chunk borders do not
    show; every output frame is yielded once, in order (scheme: :func:`~.streaming.overlapped_chunks`).
    ``overlap=None`` means :func:`~.streaming.default_overlap`: ``min(3, max_seq_len // 4)`` (0
    without ``max_seq_len``); 0 gives plain
    consecutive chunks; ``2 * overlap < max_seq_len`` is required. Host memory holds one chunk.
    Sliding-window mode (``window_size`` odd > 0): output frame t is the centre output for the input
    window ``[t - w//2, t + w//2]`` (ends padded as in :func:`window_indices`). ``device`` defaults to
    the model's (the model is moved there otherwise); 'fp16'/'bf16' use ``torch.autocast`` (fp16 on
    CUDA only).
    """
    if window_size < 0 or (window_size > 0 and window_size % 2 == 0):
        raise InferenceError(f"window_size must be 0 (recurrent) or an odd number > 0, got {window_size}")
    if max_seq_len is not None and max_seq_len < 1:
        raise InferenceError(f"max_seq_len must be >= 1 or None, got {max_seq_len}")
    try:
        context = resolve_overlap(max_seq_len, overlap, window_size)
    except OverlapError as exc:
        raise InferenceError(str(exc)) from None
    if device is None:
        param = next(iter(model.parameters()), None)
        dev = param.device if param is not None else torch.device("cpu")
    else:
        dev = resolve_device(device)
        model.to(dev)
    autocast = _autocast(precision, dev)
    model.eval()
    total = len(source) if hasattr(source, "__len__") else None
    return _restore(model, source, max_seq_len, window_size, dev, autocast, progress, total, context)


def _restore(
    model: nn.Module,
    source: Iterable[np.ndarray],
    max_seq_len: int | None,
    window_size: int,
    dev: torch.device,
    autocast: Any,
    progress: bool,
    total: int | None,
    overlap: int = 0,
) -> Iterator[np.ndarray]:
    """The generator behind :func:`restore_video_frames` (arguments already checked)."""
    bar = tqdm(total=total, unit="frame", desc="restoring", disable=not progress, dynamic_ncols=True)
    try:
        if window_size:
            half = window_size // 2
            for window in _sliding_windows(source, window_size):
                with torch.inference_mode(), autocast:
                    out = _run_model(model, _to_tensor(window, dev))
                    out = out[:, half] if out.dim() == 5 else out  # centre frame of a sequence output
                    frame = _to_frames(out)[0]
                yield frame
                bar.update(1)
        else:
            for chunk in overlapped_chunks(source, max_seq_len, overlap):
                core = chunk.core
                with torch.inference_mode(), autocast:
                    out = _run_model(model, _to_tensor(chunk.frames, dev))
                    frames = _to_frames(out[:, core]) if out.dim() == 5 else _to_frames(out)[core]
                del chunk, out
                release_free_memory()  # keeps the peak RSS of every chunk at that of the first
                for frame in frames:
                    yield frame
                    bar.update(1)
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------- writing
class InferenceResult(NamedTuple):
    """What :func:`restoration_video_inference` wrote."""

    output_path: Path
    num_frames: int
    width: int
    height: int


def check_output_path(
    input_path: PathLike | None,
    output_path: PathLike,
    overwrite: bool = False,
    source: FrameSource | None = None,
) -> str:
    """Check ``output_path`` before any work (the rules of :func:`utils.output.check_output_path`).

    Returns ``'video'`` or ``'frames'``. Raises :class:`OutputPathError` for an output that is, is
    inside or holds the input, an unknown extension, an unusable folder; :class:`OutputExistsError`
    for an existing video file, or (frames of ``source``, else any file) a same-named frame in an
    existing output folder, unless ``overwrite``.
    """
    names = None
    if source is not None:
        names = [source.output_name(i) for i in range(source.num_frames)]
    return _check_output_path(output_path, inputs=[input_path], overwrite=overwrite, frame_names=names)


def _publish_folder(tmp_dir: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished frames of ``tmp_dir`` to ``out_dir`` (rename the folder, or file by file)."""
    if not out_dir.exists():
        os.replace(tmp_dir, out_dir)
        return
    items = sorted(tmp_dir.iterdir())
    clash = next((out_dir / p.name for p in items if os.path.lexists(out_dir / p.name)), None)
    if clash is not None and not overwrite:  # e.g. a video with more frames than its container said
        raise OutputExistsError(f"{clash}: already exists (pass --overwrite to replace it)")
    for item in items:
        os.replace(item, out_dir / item.name)
    tmp_dir.rmdir()


def restoration_video_inference(
    model: nn.Module,
    input_path: PathLike | FrameSource,
    output_path: PathLike,
    max_seq_len: int | None = None,
    window_size: int = 0,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    progress: bool = True,
    crf: int = 18,
    overlap: int | None = None,
    audio: bool = True,
    overwrite: bool = False,
) -> InferenceResult:
    """Restore a frame folder / video (or a :class:`FrameSource`) into PNG frames or a video file.

    The output kind follows the path (:func:`check_output_path`): a .mp4/.mkv/.mov/.avi video, or a
    folder of PNG frames for a path without extension or ending in '/'; other extensions are refused.
    PNG frames keep the input frame names (``%08d.png`` for video input). They are written into a
    temporary folder beside ``output_path`` that replaces it when complete; if ``output_path`` already
    exists, the finished frames are then moved into it one by one. Videos are x264 (``crf``) at the
    input's frame rate, written to a temporary file and renamed; with ``audio`` (default) a video
    input's audio streams are carried into a video output (stream copy, or AAC when the container
    refuses the codec); frame outputs have no audio. An output equal to, inside or holding the input
    is refused, and so is an existing video file or same-named frame unless ``overwrite``. See
    :func:`restore_video_frames` for the other arguments.
    """
    source = input_path if isinstance(input_path, FrameSource) else read_frame_source(input_path)
    out = Path(output_path)
    kind = check_output_path(source.path, output_path, overwrite, source)
    frames = restore_video_frames(
        model, source, max_seq_len, window_size, device, precision, progress, overlap=overlap
    )
    count, size = 0, (0, 0)
    if kind == "video":
        audio_from = source.path if audio and source.kind == "video" else None
        try:
            count, size, _ = write_video(
                frames,
                out,
                source.fps,
                crf=crf,
                forbid=source.path,
                audio_from=audio_from,
                overwrite=overwrite,
            )
        except MediaError as exc:
            raise InferenceError(first_line(exc)) from None
        return InferenceResult(out, count, *size)
    tmp_dir = make_temp_dir(out)
    try:
        for frame in frames:
            name = source.output_name(count)
            tmp = tmp_dir / f".{name}.tmp.png"
            try:
                write_png(tmp, frame)
            except MediaError as exc:  # one line naming the file; a full disk says so
                raise InferenceError(str(exc)) from None
            os.replace(tmp, tmp_dir / name)
            count, size = count + 1, (frame.shape[1], frame.shape[0])
        if count == 0:
            raise FrameSourceError(f"{source.description}: no frames were read")
        _publish_folder(tmp_dir, out, overwrite)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return InferenceResult(out, count, *size)
