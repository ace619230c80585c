"""Data pipeline transforms of the official BasicVSR / BasicVSR++ recipes.

A pipeline works on a ``results`` dict created by a dataset:

* ``key`` (str), ``sequence_length`` (int), optionally ``num_input_frames``;
* ``lq_path`` / ``gt_path``: the clip's frame files (lists) or ``None`` (GT-only data);
* for video files ``lq_video`` / ``gt_video`` and ``frame_offset`` (first frame of the clip).

:class:`GenerateSegmentIndices` picks the frames, the loaders put lists of RGB ``float32`` (H, W, 3)
arrays in [0, 1] under ``lq`` / ``gt``, the augmentations act on those lists, and :class:`PackInputs`
produces the model's data contract ``dict(inputs=(t, 3, h, w), data_samples=dict(gt=(t, 3, H, W), key))``.
Randomness uses ``np.random`` (seeded per worker by mmengine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from basicvsr_archival.registry import TRANSFORMS
from basicvsr_archival.utils.imresize import bd_degrade, imresize

from .io import read_image

__all__ = [
    "Degrade",
    "Flip",
    "GenerateSegmentIndices",
    "LoadImageFromFile",
    "MirrorSequence",
    "PackInputs",
    "PairedRandomCrop",
    "RandomTransposeHW",
    "pad_indices",
]

PAD_MODES = ("replicate", "reflection", "circle")


def _frames(results: dict, key: str, who: str) -> list[np.ndarray]:
    """``results[key]`` as a list of frames, or a clear error naming the clip."""
    frames = results.get(key)
    if frames is None:
        raise KeyError(
            f"{who}: clip {results.get('key', '?')!r} has no {key!r} frames (load or degrade them first)"
        )
    return frames


def pad_indices(indices: Sequence[int], length: int, mode: str) -> list[int]:
    """Map frame indices outside ``[0, length)`` back inside.

    1. ``replicate``: clamp to the first / last frame (0 0 0 1 2 ... n-1 n-1);
    2. ``reflection``: mirror without repeating the end frame (2 1 0 1 2 ... n-2 n-1 n-2);
    3. ``circle``: wrap around (n-2 n-1 0 1 ... n-1 0 1).
    """
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {PAD_MODES}, got {mode!r}")
    if length < 1:
        raise ValueError(f"cannot pad indices into an empty sequence (length {length})")
    out = []
    for i in indices:
        if mode == "replicate":
            j = min(max(i, 0), length - 1)
        elif mode == "circle":
            j = i % length
        else:
            period = 2 * (length - 1) if length > 1 else 1
            j = i % period
            j = period - j if j >= length else j
        out.append(int(j))
    return out


@TRANSFORMS.register_module()
class GenerateSegmentIndices:
    """Choose ``num_input_frames`` frames of a clip (official ``GenerateSegmentIndices``).

    1. ``interval`` is drawn from ``interval_list`` and ``n = num_input_frames`` (argument, else the
       dataset's ``num_input_frames``, else the whole clip).
    2. Official rule: the start is uniform in ``[0, L - n * interval]`` (``random_start``; otherwise 0)
       and the frames are ``start, start + interval, ...``; a clip with ``L < n * interval`` raises,
       unless ``pad_mode`` ('replicate' | 'reflection' | 'circle') is given, which starts at 0 and
       folds the indices past the end back with :func:`pad_indices`.
    3. ``lq_path`` / ``gt_path`` lists are narrowed to the chosen frames, and ``frame_indices`` holds the
       absolute indices (``frame_offset`` + relative), used by the video-file loader.
    """

    def __init__(
        self,
        interval_list: Sequence[int] = (1,),
        num_input_frames: int | None = None,
        random_start: bool = True,
        pad_mode: str | None = None,
    ) -> None:
        if not interval_list or any(int(i) < 1 for i in interval_list):
            raise ValueError(
                f"GenerateSegmentIndices: interval_list must hold positive ints, got {interval_list}"
            )
        if pad_mode is not None and pad_mode not in PAD_MODES:
            raise ValueError(
                f"GenerateSegmentIndices: pad_mode must be None or one of {PAD_MODES}, got {pad_mode!r}"
            )
        self.interval_list = [int(i) for i in interval_list]
        self.num_input_frames = num_input_frames
        self.random_start = random_start
        self.pad_mode = pad_mode

    def __call__(self, results: dict) -> dict:
        """Select the frames; see the class docstring."""
        length = int(results["sequence_length"])
        n = self.num_input_frames or results.get("num_input_frames") or length
        interval = int(np.random.choice(self.interval_list)) if self.random_start else self.interval_list[0]
        slack = length - n * interval
        if slack >= 0:
            start = int(np.random.randint(0, slack + 1)) if self.random_start else 0
            rel = list(range(start, start + n * interval, interval))
        elif self.pad_mode is not None:
            rel = pad_indices(range(0, n * interval, interval), length, self.pad_mode)
        else:
            raise ValueError(
                f"GenerateSegmentIndices: clip {results.get('key')!r} has {length} frames, fewer than "
                f"num_input_frames={n} x interval={interval}; use shorter clips or set pad_mode"
            )
        for side in ("lq", "gt"):
            paths = results.get(f"{side}_path")
            if isinstance(paths, list | tuple):
                results[f"{side}_path"] = [paths[i] for i in rel]
        offset = int(results.get("frame_offset", 0))
        results["frame_indices"] = [offset + i for i in rel]
        results["interval"] = interval
        return results

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(interval_list={self.interval_list}, "
            f"num_input_frames={self.num_input_frames}, "
            f"random_start={self.random_start}, pad_mode={self.pad_mode!r})"
        )


@TRANSFORMS.register_module()
class LoadImageFromFile:
    """Read the frame files listed in ``results[f'{key}_path']`` into RGB float32 [0, 1] arrays.

    Every frame of a clip must have the same size; a mismatch raises naming the odd file. With
    ``allow_missing`` a clip without ``{key}_path`` (e.g. ``lq_folder=None``) is passed through, so a
    later ``Degrade(keep_existing=True)`` can make the LR frames instead.
    """

    def __init__(self, key: str = "gt", allow_missing: bool = False) -> None:
        self.key = key
        self.allow_missing = allow_missing

    def __call__(self, results: dict) -> dict:
        """Load the frames into ``results[key]``."""
        paths = results.get(f"{self.key}_path")
        if not paths:
            if self.allow_missing:
                return results
            raise KeyError(f"LoadImageFromFile: clip {results.get('key')!r} has no {self.key}_path list")
        frames = [read_image(p) for p in paths]
        for p, f in zip(paths, frames):
            if f.shape != frames[0].shape:
                raise ValueError(
                    f"{p}: frame size {f.shape[:2]} differs from {paths[0]} {frames[0].shape[:2]}"
                )
        results[self.key] = frames
        results[f"{self.key}_ori_shape"] = frames[0].shape
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r})"


@TRANSFORMS.register_module()
class Degrade:
    """Make low-resolution frames from the GT on the fly (BI or BD x``scale``).

    1. Mod-crop the GT to a multiple of ``scale`` (bottom/right, as the official preparation scripts).
    2. ``BI``: MATLAB bicubic ``imresize(gt, 1/scale)`` with antialiasing (``utils.imresize``);
       ``BD``: Gaussian blur sigma 1.6 then subsampling (``utils.imresize.bd_degrade``).
    3. With ``quantize`` (default) round the LR to 8-bit levels, like LR frames stored as PNG.

    ``keep_existing`` leaves clips that already have LR frames (loaded from disk) untouched.
    """

    def __init__(
        self, scale: int = 4, degradation: str = "BI", quantize: bool = True, keep_existing: bool = False
    ) -> None:
        if degradation not in ("BI", "BD"):
            raise ValueError(f"Degrade: degradation must be 'BI' or 'BD', got {degradation!r}")
        self.scale = int(scale)
        self.degradation = degradation
        self.quantize = quantize
        self.keep_existing = keep_existing

    def _one(self, gt: np.ndarray) -> np.ndarray:
        if self.degradation == "BI":
            lq = imresize(gt.astype(np.float64), 1.0 / self.scale)
        else:
            lq = bd_degrade(gt.astype(np.float64), self.scale)
        lq = np.clip(lq, 0.0, 1.0)
        if self.quantize:
            lq = np.round(lq * 255.0) / 255.0
        return lq.astype(np.float32)

    def __call__(self, results: dict) -> dict:
        """Write ``results['lq']`` (and the mod-cropped ``results['gt']``)."""
        if self.keep_existing and results.get("lq") is not None:
            return results
        gts = _frames(results, "gt", "Degrade")
        h, w = gts[0].shape[:2]
        hc, wc = h - h % self.scale, w - w % self.scale
        if hc == 0 or wc == 0:
            raise ValueError(
                f"Degrade: clip {results.get('key')!r} frames {h}x{w} are smaller than scale {self.scale}"
            )
        gts = [g[:hc, :wc] for g in gts]
        results["gt"] = gts
        results["lq"] = [self._one(g) for g in gts]
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale}, degradation={self.degradation!r})"


def check_pair_sizes(results: dict, scale: int, who: str) -> None:
    """Raise naming the clip (and its files) unless every GT frame is ``scale`` x its LR frame."""
    lqs, gts = _frames(results, "lq", who), _frames(results, "gt", who)
    if len(lqs) != len(gts):
        raise ValueError(f"{who}: clip {results.get('key')!r} has {len(lqs)} LR but {len(gts)} GT frames")
    lq_paths, gt_paths = results.get("lq_path") or [], results.get("gt_path") or []
    for i, (lq, gt) in enumerate(zip(lqs, gts)):
        if gt.shape[0] != lq.shape[0] * scale or gt.shape[1] != lq.shape[1] * scale:
            where = f" ({lq_paths[i]} vs {gt_paths[i]})" if i < min(len(lq_paths), len(gt_paths)) else ""
            raise ValueError(
                f"{who}: clip {results.get('key')!r} frame {i}: GT {gt.shape[:2]} is not x{scale} of "
                f"LR {lq.shape[:2]}{where}"
            )


@TRANSFORMS.register_module()
class PairedRandomCrop:
    """Crop the same random ``gt_patch_size`` GT patch (and its ``/scale`` LR patch) from every frame."""

    def __init__(self, gt_patch_size: int, scale: int = 4) -> None:
        if gt_patch_size % scale:
            raise ValueError(
                f"PairedRandomCrop: gt_patch_size {gt_patch_size} is not a multiple of scale {scale}"
            )
        self.gt_patch_size = int(gt_patch_size)
        self.scale = int(scale)

    def __call__(self, results: dict) -> dict:
        """Crop ``results['lq']`` and ``results['gt']`` in place."""
        check_pair_sizes(results, self.scale, "PairedRandomCrop")
        lq_patch = self.gt_patch_size // self.scale
        h, w = results["lq"][0].shape[:2]
        if h < lq_patch or w < lq_patch:
            raise ValueError(
                f"PairedRandomCrop: clip {results.get('key')!r} LR frames {h}x{w} are smaller than the "
                f"patch {lq_patch}x{lq_patch} (gt_patch_size {self.gt_patch_size} / scale {self.scale})"
            )
        top = int(np.random.randint(0, h - lq_patch + 1))
        left = int(np.random.randint(0, w - lq_patch + 1))
        results["lq"] = [f[top : top + lq_patch, left : left + lq_patch] for f in results["lq"]]
        t, l, p = top * self.scale, left * self.scale, self.gt_patch_size
        results["gt"] = [f[t : t + p, l : l + p] for f in results["gt"]]
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gt_patch_size={self.gt_patch_size}, scale={self.scale})"


@TRANSFORMS.register_module()
class Flip:
    """With probability ``flip_ratio`` flip every frame of ``keys`` ('horizontal' or 'vertical')."""

    def __init__(
        self, keys: Sequence[str] = ("lq", "gt"), flip_ratio: float = 0.5, direction: str = "horizontal"
    ):
        if direction not in ("horizontal", "vertical"):
            raise ValueError(f"Flip: direction must be 'horizontal' or 'vertical', got {direction!r}")
        self.keys, self.flip_ratio, self.direction = list(keys), float(flip_ratio), direction

    def __call__(self, results: dict) -> dict:
        """Flip (or not) all frames with one shared random decision."""
        flip = np.random.random() < self.flip_ratio
        if flip:
            axis = 1 if self.direction == "horizontal" else 0
            for k in self.keys:
                if results.get(k) is not None:
                    results[k] = [np.flip(f, axis=axis) for f in results[k]]
        results[f"flip_{self.direction}"] = bool(flip)
        return results

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(keys={self.keys}, flip_ratio={self.flip_ratio}, direction={self.direction!r})"


@TRANSFORMS.register_module()
class RandomTransposeHW:
    """With probability ``transpose_ratio`` swap height and width of every frame of ``keys``."""

    def __init__(self, keys: Sequence[str] = ("lq", "gt"), transpose_ratio: float = 0.5) -> None:
        self.keys, self.transpose_ratio = list(keys), float(transpose_ratio)

    def __call__(self, results: dict) -> dict:
        """Transpose (or not) all frames with one shared random decision."""
        transpose = np.random.random() < self.transpose_ratio
        if transpose:
            for k in self.keys:
                if results.get(k) is not None:
                    results[k] = [f.transpose(1, 0, 2) for f in results[k]]
        results["transpose"] = bool(transpose)
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keys={self.keys}, transpose_ratio={self.transpose_ratio})"


@TRANSFORMS.register_module()
class MirrorSequence:
    """Append the reversed sequence: ``[x0, ..., xn-1]`` -> ``[x0, ..., xn-1, xn-1, ..., x0]``."""

    def __init__(self, keys: Sequence[str] = ("lq", "gt")) -> None:
        self.keys = list(keys)

    def __call__(self, results: dict) -> dict:
        """Mirror every list in ``keys``."""
        for k in self.keys:
            frames = _frames(results, k, "MirrorSequence")
            results[k] = list(frames) + list(frames[::-1])
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keys={self.keys})"


def _stack(frames: list[np.ndarray]) -> torch.Tensor:
    """List of (H, W, 3) arrays -> contiguous float32 tensor (t, 3, H, W)."""
    arr = np.stack([np.ascontiguousarray(f, dtype=np.float32) for f in frames])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


@TRANSFORMS.register_module()
class PackInputs:
    """Pack frames into the data contract ``dict(inputs=(t, 3, h, w), data_samples=dict(gt=..., key=...))``.

    ``gt`` is included when present; with ``scale`` the LR/GT sizes are checked first.
    """

    def __init__(self, scale: int | None = None) -> None:
        self.scale = scale

    def __call__(self, results: dict) -> dict[str, Any]:
        """Build the packed dict."""
        lqs = _frames(results, "lq", "PackInputs")
        data_samples: dict[str, Any] = {}
        if results.get("gt") is not None:
            if self.scale is not None:
                check_pair_sizes(results, self.scale, "PackInputs")
            elif len(results["gt"]) != len(lqs):
                raise ValueError(
                    f"PackInputs: clip {results.get('key')!r} has {len(lqs)} LR "
                    f"but {len(results['gt'])} GT frames"
                )
            data_samples["gt"] = _stack(results["gt"])
        data_samples["key"] = str(results.get("key", ""))
        return dict(inputs=_stack(lqs), data_samples=data_samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale})"
