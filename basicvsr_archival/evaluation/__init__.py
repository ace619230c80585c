"""Evaluation metrics; importing this module registers them in ``METRICS``."""

from .metrics import PSNR, SSIM, ClipMetric, psnr, rgb2y, ssim, to_uint8_frames

__all__ = ["PSNR", "SSIM", "ClipMetric", "psnr", "rgb2y", "ssim", "to_uint8_frames"]
