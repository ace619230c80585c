"""MATLAB-compatible ``imresize`` (BI) and ``bd_degrade`` (BD) against independently derived references.

Where the reference numbers come from (no MATLAB run is available here):

1. Kernel weights, derived by hand from MATLAB's documented algorithm (``imresize.m``, Keys cubic
   a = -0.5, antialiased downscaling stretches the kernel: ``h(t) = s * k(s t)``, width ``4 / s``).
   For ``s = 1/2`` an interior output pixel sits halfway between two inputs, so its taps are at
   distances +-0.5, +-1.5, +-2.5, +-3.5 and the weights are ``0.5 k(0.25), 0.5 k(0.75), 0.5 k(1.25),
   0.5 k(1.75)`` = (0.8671875, 0.2265625, -0.0703125, -0.0234375) / 2, i.e. exactly
   (111, 29, -9, -3) / 256 per side (they already sum to one). The same numbers are the published
   "bicubic x2" kernel of MATLAB's imresize in third-party tables, as are the x4 values checked below.
2. The first output of ``imresize(1:16, 1/2)``: MATLAB folds taps before the first pixel back
   symmetrically (index 0 -> 1, -1 -> 2, -2 -> 3), so output 1 =
   (-3*3 - 9*2 + 29*1 + 111*1 + 111*2 + 29*3 - 9*4 - 3*5) / 256 = 371 / 256 = 1.44921875.
3. On real images, a separate, loop-based implementation of the same documented algorithm
   (written independently below, one output pixel at a time) must agree within 1/255.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from basicvsr_archival.utils.imresize import bd_degrade, cubic_kernel, imresize, resize_weights

X2_KERNEL = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256.0
# published MATLAB bicubic x4 antialiasing kernel (8 decimals)
X4_KERNEL = np.array(
    [-0.00170898, -0.01098633, -0.01831055, -0.01196289, 0.02270508, 0.09741211, 0.18188477, 0.2409668]
)
X4_KERNEL = np.concatenate([X4_KERNEL, X4_KERNEL[::-1]])


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _reference_resize_1d(signal: np.ndarray, out_len: int, scale: float) -> np.ndarray:
    """Loop-based MATLAB bicubic resize of axis 0 (antialiased when scale < 1), written from the formulas."""

    def keys(x: float) -> float:
        ax = abs(x)
        if ax <= 1:
            return 1.5 * ax**3 - 2.5 * ax**2 + 1
        if ax <= 2:
            return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
        return 0.0

    n = signal.shape[0]
    width = 4.0 / scale if scale < 1 else 4.0
    out = np.zeros((out_len, *signal.shape[1:]), dtype=np.float64)
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = []
        for j in range(left, left + math.ceil(width) + 2):
            w = scale * keys(scale * (u - j)) if scale < 1 else keys(u - j)
            idx = j
            while idx < 1 or idx > n:  # symmetric padding (edge pixel repeated)
                idx = 1 - idx if idx < 1 else 2 * n + 1 - idx
            taps.append((idx - 1, w))
        total = sum(w for _, w in taps)
        for idx, w in taps:
            out[x - 1] += (w / total) * signal[idx]
    return out


def _reference_imresize(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    rows = _reference_resize_1d(img.astype(np.float64), math.ceil(h * scale), scale)
    both = _reference_resize_1d(rows.transpose(1, 0, 2), math.ceil(w * scale), scale).transpose(1, 0, 2)
    return np.clip(np.round(both), 0, 255).astype(np.uint8)


def test_cubic_kernel_values():
    """Keys' kernel at a = -0.5: k(0)=1, k(1)=0, k(2)=0, k(0.5)=0.5625, k(1.5)=-0.0625."""
    got = cubic_kernel(np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5]))
    np.testing.assert_allclose(got, [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625], atol=1e-12)


def test_x2_and_x4_weights_match_matlab_kernels():
    w2 = resize_weights(32, 16, 0.5)
    np.testing.assert_allclose(w2[7, 11:19], X2_KERNEL, atol=1e-12)  # output 8 (1-based): inputs 12..19
    np.testing.assert_allclose(w2.sum(axis=1), 1.0, atol=1e-12)
    w4 = resize_weights(64, 16, 0.25)
    np.testing.assert_allclose(w4[7, 22:38], X4_KERNEL, atol=5e-9)


def test_ramp_downscale_boundary_and_interior():
    ramp = np.tile(np.arange(1, 17, dtype=np.float64), (4, 1))  # 4 x 16
    out = imresize(ramp, 0.5)
    assert out.shape == (2, 8)
    assert out[0, 0] == pytest.approx(371 / 256, abs=1e-12)
    # interior outputs of a ramp are the ramp at the output centre: 2x - 0.5
    np.testing.assert_allclose(out[0, 2:6], [5.5, 7.5, 9.5, 11.5], atol=1e-12)
    assert out[0, 7] == pytest.approx(17 - 371 / 256, abs=1e-12)  # mirror image of the first output


def test_constant_image_is_preserved():
    img = np.full((37, 53, 3), 0.4, dtype=np.float32)
    for scale in (0.25, 0.5, 2.0):
        out = imresize(img, scale)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, 0.4, atol=1e-6)


def test_output_size_rule_and_uint8():
    img = np.random.default_rng(0).integers(0, 256, (45, 81, 3), dtype=np.uint8)
    out = imresize(img, 0.25)
    assert out.shape == (12, 21, 3) and out.dtype == np.uint8  # ceil(45/4), ceil(81/4)
    assert imresize(img, output_shape=(20, 30)).shape == (20, 30, 3)


@pytest.mark.parametrize("scale", [0.25, 0.5, 2.0])
def test_real_frame_matches_independent_reference(reds_demo_dir: Path, scale: float):
    img = _read_rgb(reds_demo_dir / "00000000.png")
    if scale > 1:
        img = img[:40, :60]  # keep the loop-based reference fast
    got = imresize(img, scale)
    ref = _reference_imresize(img, scale)
    assert got.shape == ref.shape
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1  # within 1/255


def _reference_bd(img: np.ndarray, scale: int = 4, sigma: float = 1.6) -> np.ndarray:
    """Loop-based BD_degradation.m: 12x12 fspecial Gaussian, replicate imfilter, samples 2:4:end-2."""
    size = math.ceil(sigma * 3) * 2 + 2
    ax = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    centre = (size + 1) // 2 - 1  # MATLAB centre floor((size + 1) / 2), 0-based
    h, w = img.shape[:2]
    rows = range(scale // 2 - 1, h - scale // 2, scale)
    cols = range(scale // 2 - 1, w - scale // 2, scale)
    data = img.astype(np.float64)
    out = np.zeros((len(rows), len(cols), img.shape[2]))
    for a, r in enumerate(rows):
        for b, c in enumerate(cols):
            acc = np.zeros(img.shape[2])
            for i in range(size):
                for j in range(size):
                    rr = min(max(r + i - centre, 0), h - 1)
                    cc = min(max(c + j - centre, 0), w - 1)
                    acc += kernel[i, j] * data[rr, cc]
            out[a, b] = acc
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def test_bd_matches_independent_reference(reds_demo_dir: Path):
    img = _read_rgb(reds_demo_dir / "00000005.png")[:48, :64]
    got = bd_degrade(img)
    assert got.shape == (12, 16, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - _reference_bd(img).astype(int)).max() <= 1


def test_bd_constant_and_errors():
    np.testing.assert_allclose(bd_degrade(np.full((16, 16), 0.3)), 0.3, atol=1e-12)
    with pytest.raises(ValueError, match="even integer"):
        bd_degrade(np.zeros((16, 16)), scale=3)
    with pytest.raises(ValueError, match="shape"):
        imresize(np.zeros((2, 2, 2, 2)), 0.5)
    with pytest.raises(ValueError, match="positive scale"):
        imresize(np.zeros((8, 8)))
