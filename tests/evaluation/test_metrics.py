"""PSNR / SSIM vs scikit-image on real REDS frames and a degraded copy, in RGB and Y, with crop_border."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from basicvsr_archival.evaluation import PSNR, SSIM, psnr, rgb2y, ssim


def _pair(reds_demo_dir: Path, index: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A real RGB frame and a degraded copy (JPEG q=30 then a small blur), both uint8 (H, W, 3)."""
    img = cv2.cvtColor(cv2.imread(str(reds_demo_dir / f"{index:08d}.png")), cv2.COLOR_BGR2RGB)
    _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 30])
    deg = cv2.GaussianBlur(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), (3, 3), 0.8)
    return img, deg


def _y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma, written out independently: 16 + (65.481 R + 128.553 G + 24.966 B) / 255 on [0, 255]."""
    r, g, b = (img[..., c].astype(np.float64) for c in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    kwargs = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
    if a.ndim == 3:
        kwargs["channel_axis"] = 2
    return structural_similarity(a.astype(np.float64), b.astype(np.float64), **kwargs)


@pytest.mark.parametrize("crop_border", [0, 4])
def test_psnr_matches_skimage(reds_demo_dir: Path, crop_border: int):
    img, deg = _pair(reds_demo_dir)
    c = slice(crop_border, -crop_border) if crop_border else slice(None)
    ref_rgb = peak_signal_noise_ratio(img[c, c], deg[c, c], data_range=255)
    ref_y = peak_signal_noise_ratio(_y(img)[c, c], _y(deg)[c, c], data_range=255)
    assert psnr(img, deg, crop_border) == pytest.approx(ref_rgb, abs=1e-6)
    assert psnr(img, deg, crop_border, convert_to="y") == pytest.approx(ref_y, abs=1e-6)
    assert 20 < ref_rgb < 40 and ref_y != pytest.approx(ref_rgb, abs=1e-3)


@pytest.mark.parametrize("crop_border", [0, 4])
def test_ssim_matches_skimage(reds_demo_dir: Path, crop_border: int):
    img, deg = _pair(reds_demo_dir)
    c = slice(crop_border, -crop_border) if crop_border else slice(None)
    ref_rgb = _skimage_ssim(img[c, c], deg[c, c])
    ref_y = _skimage_ssim(_y(img)[c, c], _y(deg)[c, c])
    assert ssim(img, deg, crop_border) == pytest.approx(ref_rgb, abs=1e-6)
    assert ssim(img, deg, crop_border, convert_to="y") == pytest.approx(ref_y, abs=1e-6)
    assert 0.5 < ref_rgb < 0.99


def test_rgb2y_range_and_identity():
    assert rgb2y(np.zeros((1, 1, 3)))[0, 0] == pytest.approx(16.0)
    assert rgb2y(np.full((1, 1, 3), 255.0))[0, 0] == pytest.approx(235.0)
    assert psnr(np.ones((8, 8, 3)), np.ones((8, 8, 3))) == float("inf")


def _clip(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0


def test_metric_classes_per_frame_per_clip_mean(reds_demo_dir: Path):
    pairs = [_pair(reds_demo_dir, i) for i in range(4)]
    gt = [p[0] for p in pairs]
    deg = [p[1] for p in pairs]
    samples = [
        dict(pred=_clip(deg[:3]), gt=_clip(gt[:3]), key="a"),
        dict(pred=_clip(deg[3:]), gt=_clip(gt[3:]), key="b"),
        dict(pred=_clip(deg[:1]), key="no_gt"),  # predictions without GT are skipped
    ]
    for cls, fn in ((PSNR, psnr), (SSIM, ssim)):
        metric = cls(crop_border=2, convert_to="y")
        metric.process({}, samples)
        result = metric.compute_metrics(metric.results)
        clip_a = np.mean([fn(deg[i], gt[i], 2, "y") for i in range(3)])
        clip_b = fn(deg[3], gt[3], 2, "y")
        assert set(metric.per_clip) == {"a", "b"}
        assert metric.per_clip["a"] == pytest.approx(clip_a, abs=1e-9)
        assert result == {cls.name: pytest.approx((clip_a + clip_b) / 2, abs=1e-9)}


def test_metric_quantises_to_8_bit_like_mmediting():
    gt = torch.full((1, 3, 16, 16), 100 / 255.0)
    pred = gt + 0.3 / 255.0  # rounds back to the same 8-bit level
    metric = PSNR()
    metric.process({}, [dict(pred=pred, gt=gt, key="x")])
    assert metric.compute_metrics(metric.results)["PSNR"] == float("inf")


def test_metric_errors():
    with pytest.raises(ValueError, match="convert_to"):
        PSNR(convert_to="ycbcr")
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match="crop_border"):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), crop_border=4)
    metric = SSIM()
    with pytest.raises(ValueError, match="pred"):
        metric.process({}, [dict(pred=torch.zeros(2, 3, 16, 16), gt=torch.zeros(1, 3, 16, 16), key="k")])
    with pytest.raises(ValueError, match="no prediction"):
        SSIM().compute_metrics([])
