"""MATLAB-compatible image degradations used to make low-resolution training data.

* :func:`imresize` reproduces MATLAB's ``imresize(img, scale, 'bicubic')`` (with its default
  antialiasing), the "BI" degradation of REDS, Vimeo-90K-BI and Vid4-BI.
* :func:`bd_degrade` reproduces the "BD" degradation script published with the Vimeo-90K / Vid4
  benchmarks (``BD_degradation.m``): Gaussian blur (sigma 1.6) then x4 subsampling.

Both work on ``(H, W)`` or ``(H, W, C)`` numpy arrays: ``uint8`` in, ``uint8`` out (rounded and
clipped, as MATLAB does for integer images); floating point in, float out (no clipping).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bd_degrade", "cubic_kernel", "imresize", "resize_weights"]


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, the one MATLAB's ``imresize`` uses.

    Keys, "Cubic convolution interpolation for digital image processing", IEEE TASSP 29(6), 1981:
    1. ``k(x) = 1.5|x|^3 - 2.5|x|^2 + 1`` for ``|x| <= 1``;
    2. ``k(x) = -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2`` for ``1 < |x| <= 2``;
    3. ``k(x) = 0`` otherwise.
    """
    absx = np.abs(np.asarray(x, dtype=np.float64))
    absx2 = absx * absx
    absx3 = absx2 * absx
    inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return inner + outer


def resize_weights(in_length: int, out_length: int, scale: float, antialiasing: bool = True) -> np.ndarray:
    """Dense ``(out_length, in_length)`` matrix of MATLAB ``imresize`` bicubic weights along one axis.

    Follows ``contributions()`` in MATLAB's ``imresize.m``:
    1. output pixel ``x`` (1-based) maps to input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``;
    2. when downscaling with antialiasing the kernel is stretched: ``h(t) = scale * k(scale * t)`` and
       its support ``4 / scale`` (otherwise ``h = k``, support 4);
    3. taps are ``left = floor(u - support / 2)`` plus ``ceil(support) + 2`` neighbours, weighted by
       ``h(u - index)`` and normalised to sum to one per output pixel;
    4. taps outside ``[1, in_length]`` are folded back by symmetric padding
       (``aux = [1..n, n..1]``, ``index = aux[mod(index - 1, 2n)]``), so their weight is added to the
       mirrored input pixel.
    """
    if in_length < 1 or out_length < 1:
        raise ValueError(f"resize_weights: lengths must be positive, got in={in_length}, out={out_length}")
    if scale < 1 and antialiasing:
        support = 4.0 / scale

        def kernel(t: np.ndarray) -> np.ndarray:
            return scale * cubic_kernel(scale * t)

    else:
        support = 4.0
        kernel = cubic_kernel
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - support / 2.0)
    num_taps = math.ceil(support) + 2
    indices = left[:, None] + np.arange(num_taps, dtype=np.float64)[None, :]
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
    cols = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    matrix = np.zeros((out_length, in_length), dtype=np.float64)
    rows = np.repeat(np.arange(out_length), num_taps)
    np.add.at(matrix, (rows, cols.ravel()), weights.ravel())
    return matrix


def _check_image(img: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"{name}: expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    return img


def _to_output(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    if like.dtype == np.uint8:
        return np.clip(np.round(result), 0, 255).astype(np.uint8)
    if np.issubdtype(like.dtype, np.floating):
        return result.astype(like.dtype)
    return result


def imresize(
    img: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    antialiasing: bool = True,
) -> np.ndarray:
    """Resize like MATLAB ``imresize(img, scale, 'bicubic')`` (antialiased when downscaling).

    1. Output size is ``ceil(scale * size)`` per axis (MATLAB's rule), or ``output_shape`` (then
       the per-axis scale is ``out / in``).
    2. Each axis is resized with the weight matrix of :func:`resize_weights`, the axis with the
       smaller scale first (MATLAB's order; rows first on ties), in float64.
    3. ``uint8`` input is rounded and clipped to ``uint8``; float input stays float.
    """
    img = _check_image(img, "imresize")
    in_h, in_w = img.shape[:2]
    if output_shape is None:
        if scale is None or scale <= 0:
            raise ValueError(f"imresize: give a positive scale or an output_shape, got scale={scale}")
        out_h, out_w = math.ceil(scale * in_h), math.ceil(scale * in_w)
        scales = (float(scale), float(scale))
    else:
        out_h, out_w = (int(v) for v in output_shape)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"imresize: output_shape must be positive, got {output_shape}")
        scales = (out_h / in_h, out_w / in_w)
    data = img.astype(np.float64)
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    for axis in order:
        in_len, out_len = data.shape[axis], (out_h, out_w)[axis]
        weights = resize_weights(in_len, out_len, scales[axis], antialiasing)
        data = np.moveaxis(np.tensordot(weights, data, axes=([1], [axis])), 0, axis)
    return _to_output(data, img)


def _fspecial_gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """1-D factor of MATLAB ``fspecial('gaussian', size, sigma)`` (which is separable)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def bd_degrade(
    img: np.ndarray, scale: int = 4, sigma: float = 1.6, kernel_size: int | None = None
) -> np.ndarray:
    """Blur-downsample ("BD") degradation of the published MATLAB script ``BD_degradation.m``.

    1. Kernel: ``fspecial('gaussian', kernel_size, sigma)`` with the script's default
       ``kernel_size = ceil(3 * sigma) * 2 + 2`` (12 for sigma 1.6; pass 13 for the odd 13x13 variant).
    2. ``imfilter(img, kernel, 'replicate')``: correlation with the kernel centre at 1-based
       ``floor((kernel_size + 1) / 2)`` and replicated borders.
    3. Subsample ``img(scale/2 : scale : end - scale/2, ...)`` (1-based), i.e. 0-based rows and
       columns ``scale/2 - 1 + scale * j``; an (H, W) image gives (H // scale, W // scale) when H, W
       are multiples of ``scale`` (the script mod-crops first).
    """
    img = _check_image(img, "bd_degrade")
    if scale < 2 or scale % 2:
        raise ValueError(f"bd_degrade: scale must be an even integer >= 2, got {scale}")
    if kernel_size is None:
        kernel_size = math.ceil(sigma * 3) * 2 + 2
    g = _fspecial_gaussian_1d(kernel_size, sigma)
    centre = (kernel_size + 1) // 2 - 1
    data = img.astype(np.float64)
    for axis in (0, 1):
        length = data.shape[axis]
        first = scale // 2 - 1
        positions = np.arange(first, length - scale // 2, scale)
        if positions.size == 0:
            raise ValueError(f"bd_degrade: image of shape {img.shape} is too small for scale {scale}")
        taps = positions[:, None] + np.arange(kernel_size)[None, :] - centre
        taps = np.clip(taps, 0, length - 1)
        matrix = np.zeros((positions.size, length), dtype=np.float64)
        np.add.at(
            matrix,
            (np.repeat(np.arange(positions.size), kernel_size), taps.ravel()),
            np.tile(g, positions.size),
        )
        data = np.moveaxis(np.tensordot(matrix, data, axes=([1], [axis])), 0, axis)
    return _to_output(data, img)
