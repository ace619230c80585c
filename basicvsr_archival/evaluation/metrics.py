"""PSNR and SSIM for video super-resolution, computed as MMEditing does.

Per frame, on images quantised to 8 bits (MMEditing's ``tensor2img``: ``round(x * 255)``), optionally on
the BT.601 luma only; averaged over the frames of a clip, then over clips. The metric classes keep the
per-clip values (``metric.per_clip``) for reports such as ``tools/test.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch
from mmengine.evaluator import BaseMetric

from basicvsr_archival.registry import METRICS

__all__ = ["PSNR", "SSIM", "ClipMetric", "psnr", "rgb2y", "ssim", "to_uint8_frames"]


def rgb2y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB image with values in [0, 255], as MMEditing's ``bgr2ycbcr(y_only=True)``.

    ITU-R BT.601 (studio swing), with R, G, B scaled to [0, 1]:
    1. ``Y = 16 + 65.481 R + 128.553 G + 24.966 B``, giving Y in [16, 235] on the [0, 255] scale;
    2. no rounding (MMEditing keeps the float value). Returns (H, W) float64.
    """
    rgb = np.asarray(img, dtype=np.float64) / 255.0
    return 16.0 + rgb[..., 0] * 65.481 + rgb[..., 1] * 128.553 + rgb[..., 2] * 24.966


def _prepare(img1: np.ndarray, img2: np.ndarray, crop_border: int, convert_to: str | None) -> tuple:
    """Check shapes, crop ``crop_border`` pixels from every side and convert to Y if asked (float64, HWC)."""
    if img1.shape != img2.shape:
        raise ValueError(f"image shapes differ: {img1.shape} vs {img2.shape}")
    a, b = np.asarray(img1, dtype=np.float64), np.asarray(img2, dtype=np.float64)
    if convert_to is not None:
        if convert_to.lower() != "y":
            raise ValueError(f"convert_to must be None or 'y', got {convert_to!r}")
        a, b = rgb2y(a)[..., None], rgb2y(b)[..., None]
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if crop_border:
        if 2 * crop_border >= min(a.shape[:2]):
            raise ValueError(f"crop_border {crop_border} removes the whole {a.shape[:2]} image")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    return a, b


def psnr(img1: np.ndarray, img2: np.ndarray, crop_border: int = 0, convert_to: str | None = None) -> float:
    """Peak signal-to-noise ratio of two RGB images in [0, 255] (H, W, 3).

    1. Crop ``crop_border`` pixels on each side (after optional BT.601 Y conversion, :func:`rgb2y`).
    2. ``MSE = mean((img1 - img2)^2)``; ``PSNR = 20 log10(255 / sqrt(MSE))`` dB, ``inf`` when equal.
    """
    a, b = _prepare(img1, img2, crop_border, convert_to)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(20.0 * np.log10(255.0 / np.sqrt(mse)))


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of one channel in [0, 255] (Wang et al. 2004, MMEditing's ``_ssim``)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = kernel @ kernel.T
    mu1 = cv2.filter2D(a, -1, window)[5:-5, 5:-5]
    mu2 = cv2.filter2D(b, -1, window)[5:-5, 5:-5]
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = cv2.filter2D(a * a, -1, window)[5:-5, 5:-5] - mu1_sq
    sigma2_sq = cv2.filter2D(b * b, -1, window)[5:-5, 5:-5] - mu2_sq
    sigma12 = cv2.filter2D(a * b, -1, window)[5:-5, 5:-5] - mu1_mu2
    num = (2 * mu1_mu2 + c1) * (2 * sigma12 + c2)
    den = (mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2)
    return float(np.mean(num / den))


def ssim(img1: np.ndarray, img2: np.ndarray, crop_border: int = 0, convert_to: str | None = None) -> float:
    """Structural similarity of two RGB images in [0, 255] (H, W, 3), MMEditing's definition.

    Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to structural
    similarity", IEEE TIP 13(4), 2004:
    1. crop ``crop_border`` (after optional Y conversion, :func:`rgb2y`);
    2. local statistics with an 11x11 Gaussian window, sigma 1.5, keeping only the valid interior;
    3. ``SSIM = (2 mu1 mu2 + C1)(2 sigma12 + C2) / ((mu1^2 + mu2^2 + C1)(sigma1^2 + sigma2^2 + C2))`` with
       ``C1 = (0.01 * 255)^2``, ``C2 = (0.03 * 255)^2``, averaged over the map, then over channels.
    """
    a, b = _prepare(img1, img2, crop_border, convert_to)
    if min(a.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {a.shape[:2]}")
    return float(np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def to_uint8_frames(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """(t, 3, H, W) or (3, H, W) values in [0, 1] -> (t, H, W, 3) 8-bit levels as float64 (round(x * 255))."""
    arr = frames.detach().cpu().double().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise ValueError(f"expected frames of shape (t, 3, H, W), got {arr.shape}")
    return np.round(np.clip(arr, 0.0, 1.0) * 255.0).transpose(0, 2, 3, 1)


class ClipMetric(BaseMetric):
    """Base of the clip metrics: per-frame values averaged per clip, then the mean over clips.

    ``process`` receives the restorer's predictions (``dict(pred, gt, key)`` with (t, 3, H, W) tensors in
    [0, 1]); ``compute_metrics`` returns ``{name: mean over clips}`` and keeps ``self.per_clip``
    (``{key: value}``, on the rank that computes). Frames sharing a key (a clip split into several
    samples) are pooled before averaging.
    """

    name = "metric"
    default_prefix = ""  # keys stay "PSNR" / "SSIM" (what CheckpointHook(save_best="PSNR") expects)

    def __init__(
        self,
        crop_border: int = 0,
        convert_to: str | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if convert_to is not None and convert_to.lower() != "y":
            raise ValueError(f"{self.name}: convert_to must be None or 'y', got {convert_to!r}")
        self.crop_border = int(crop_border)
        self.convert_to = convert_to
        self.per_clip: dict[str, float] = OrderedDict()

    def frame_metric(self, pred: np.ndarray, gt: np.ndarray) -> float:
        """Metric of one (H, W, 3) frame pair in [0, 255]."""
        raise NotImplementedError

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Store ``(key, per-frame values)`` of every prediction that has a GT."""
        for sample in data_samples:
            if sample.get("gt") is None:
                continue
            pred, gt = to_uint8_frames(sample["pred"]), to_uint8_frames(sample["gt"])
            if pred.shape != gt.shape:
                raise ValueError(
                    f"{self.name}: clip {sample.get('key')!r} pred {pred.shape} vs GT {gt.shape}"
                )
            values = [self.frame_metric(p, g) for p, g in zip(pred, gt)]
            self.results.append((str(sample.get("key", len(self.results))), values))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """Mean over clips of the per-clip mean of the per-frame values."""
        per_frames: dict[str, list[float]] = OrderedDict()
        for key, values in results:
            per_frames.setdefault(key, []).extend(values)
        self.per_clip = OrderedDict((k, float(np.mean(v))) for k, v in per_frames.items())
        if not self.per_clip:
            raise ValueError(f"{self.name}: no prediction with a GT was evaluated")
        return {self.name: float(np.mean(list(self.per_clip.values())))}


@METRICS.register_module()
class PSNR(ClipMetric):
    """PSNR (dB) per frame on 8-bit RGB or BT.601 Y (``convert_to='y'``), see :func:`psnr`."""

    name = "PSNR"

    def frame_metric(self, pred: np.ndarray, gt: np.ndarray) -> float:
        """PSNR of one frame pair."""
        return psnr(pred, gt, self.crop_border, self.convert_to)


@METRICS.register_module()
class SSIM(ClipMetric):
    """SSIM per frame on 8-bit RGB or BT.601 Y (``convert_to='y'``), see :func:`ssim`."""

    name = "SSIM"

    def frame_metric(self, pred: np.ndarray, gt: np.ndarray) -> float:
        """SSIM of one frame pair."""
        return ssim(pred, gt, self.crop_border, self.convert_to)
