"""``Conv2d``: ``nn.Conv2d`` that runs CPU float32 inference through NNPACK's fast algorithms.

On CPUs without AVX-512/AMX (oneDNN has no Winograd kernels for AVX2), a direct 3x3 convolution
runs near the FMA peak, so the only way to go faster is fewer multiplications. NNPACK, which
PyTorch's CPU wheels ship, has

- Winograd F(6x6, 3x3) for 3x3 kernels (Lavin & Gray, "Fast Algorithms for Convolutional Neural
  Networks", CVPR 2016, eq. 7: ``Y = A^T [(G g G^T) * (B^T d B)] A`` on 8x8 input tiles), which
  needs 5.06x fewer multiplications than the direct form (36 * 9 / 64), and
- FFT 16x16 for larger kernels (SPyNet's 7x7), exact up to float32 rounding.

Measured on a 2-core AVX2 EPYC (``benchmarks/bench_inference.py --conv-only``): 1.6-2.2x faster for
BasicVSR++'s 3x3 convolutions at 180x320 and 2.4-4x for SPyNet's 7x7 ones than oneDNN's direct
kernels. The Winograd transform costs accuracy: about 1e-5 relative error per layer instead of
~1e-7 (the whole c64n7 network stays above 60 dB PSNR against the direct result; the benchmark
prints it), so it is used only for inference and can be switched off.

Selection (``BASICVSR_CONV_IMPL``): ``'auto'`` (default) takes NNPACK where it applies and is faster
(see :func:`nnpack_applies`), ``'native'`` always calls ``F.conv2d`` (oneDNN), ``'nnpack'`` takes
NNPACK wherever it applies. The choice is made per call from the inputs, never stored in the
module: parameters and state dicts are those of ``nn.Conv2d``.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONV_IMPLS = ("auto", "native", "nnpack")
_ENV = "BASICVSR_CONV_IMPL"


def conv_impl() -> str:
    """The convolution implementation asked for by ``BASICVSR_CONV_IMPL`` (default 'auto')."""
    impl = os.environ.get(_ENV, "auto").strip().lower() or "auto"
    if impl not in CONV_IMPLS:
        raise ValueError(f"{_ENV}={impl!r}: use one of {', '.join(CONV_IMPLS)}")
    return impl


@functools.lru_cache(maxsize=1)
def nnpack_works() -> bool:
    """Whether NNPACK initialises here and matches ``F.conv2d`` on a small 3x3 and 7x7 case."""
    try:
        if not torch.backends.nnpack.is_available():  # also initialises NNPACK (required before use)
            return False
        gen = torch.Generator().manual_seed(0)
        for k in (3, 7):
            x = torch.randn(1, 8, 20, 24, generator=gen)
            w = torch.randn(16, 8, k, k, generator=gen) / (8 * k * k) ** 0.5
            b = torch.randn(16, generator=gen)
            with torch.no_grad():
                got = torch._nnpack_spatial_convolution(x, w, b, [k // 2] * 4, [1, 1])
                ref = F.conv2d(x, w, b, padding=k // 2)
            if got.shape != ref.shape or not torch.allclose(got, ref, atol=1e-3, rtol=1e-3):
                return False
        return True
    except (RuntimeError, AttributeError):
        return False


def nnpack_applies(conv: nn.Conv2d, x: Tensor, impl: str) -> bool:
    """Whether this call of ``conv`` on ``x`` runs through NNPACK under implementation ``impl``.

    Conditions: float32 CPU inference (no autograd needed, not tracing/exporting/compiling), a 4-D
    input, stride 1, dilation 1, groups 1, zero padding of at most ``kernel // 2``. With 'auto', also
    where it measured faster than oneDNN: 3x3 kernels only with at least 16 output channels
    (the 64->3 ``conv_last`` is faster direct) and NCHW inputs (an NHWC input would need a copy).
    """
    if impl == "native":
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False
    if torch.compiler.is_compiling():
        return False
    weight = conv.weight
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32 or x.dim() != 4:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    kh, kw = conv.kernel_size
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros":
        return False
    if not isinstance(conv.padding, tuple) or conv.padding[0] > kh // 2 or conv.padding[1] > kw // 2:
        return False
    if impl == "auto":
        if (kh, kw) == (3, 3) and conv.out_channels < 16:
            return False
        if not x.is_contiguous():
            return False
    return nnpack_works()


# NNPACK's transform workspace is a few times the tensor it transforms; layers larger than
# _STRIP_MIN_PIXELS (a 720p frame, 921,600 px, is below it) run in strips of _STRIP_PIXELS pixels.
# Strips cost time (measured 433 -> 643 ms for a 64->64 3x3 layer at 720p in two strips: the strip
# copies), so they only bound memory for the big frames (1080p, 4K outputs).
_STRIP_MIN_PIXELS = 1 << 20
_STRIP_PIXELS = 1 << 19


def _nnpack_conv(x: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int]) -> Tensor:
    """NNPACK convolution of ``x`` (n, c_in, h, w) -> (n, c_out, h_out, w_out), in strips of rows.

    1. One image at a time (NNPACK's batched path measured slower than a loop over images).
    2. 'Same' convolutions (odd kernel, padding ``k // 2``) with more than ``_STRIP_MIN_PIXELS``
       output pixels are cut into strips of output rows ``[r0, r1)``; a strip convolves input rows
       ``[r0 - ph, r1 + ph)`` (clipped to the image) with the layer's zero padding and keeps the
       output rows of ``[r0, r1)``, which see only real rows or the image's own border padding.
       NNPACK's Winograd/FFT workspace is a few times the tensor it transforms: without strips a
       4K 64-channel layer would need several GB of it.
    """
    weight = weight.contiguous()
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    n, _, h, w = x.shape
    kh, kw = weight.shape[2:]
    ph, pw = padding
    pad = [ph, pw]  # PyTorch's binding pads (top = bottom = ph, left = right = pw)
    x = x.contiguous()
    rows = max(1, _STRIP_PIXELS // max(1, w))
    same = kh == 2 * ph + 1 and kw == 2 * pw + 1
    if not same or h * w <= _STRIP_MIN_PIXELS or rows >= h:
        outs = [torch._nnpack_spatial_convolution(xi, weight, bias, pad, [1, 1]) for xi in x.split(1)]
        return outs[0] if n == 1 else torch.cat(outs)
    out = x.new_empty(n, weight.shape[0], h, w)  # (n, c_out, h, w): 'same' size
    for i in range(n):
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            lo, hi = max(0, r0 - ph), min(h, r1 + ph)  # input rows with a halo of ph on each side
            strip = x[i : i + 1, :, lo:hi].contiguous()  # (1, c_in, hi - lo, w)
            res = torch._nnpack_spatial_convolution(strip, weight, bias, pad, [1, 1])  # (1, c_out, hi-lo, w)
            out[i : i + 1, :, r0:r1] = res[:, :, r0 - lo : r1 - lo]
    return out


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same arguments, parameters and state dict) with NNPACK for CPU float32 inference.

    Shapes: input ``(n, c_in, h, w)`` -> output ``(n, c_out, h_out, w_out)``, as ``nn.Conv2d``. The
    implementation is chosen per call (:func:`nnpack_applies`, ``BASICVSR_CONV_IMPL``); training,
    other devices and dtypes always use ``F.conv2d``.
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Convolve ``input`` (n, c_in, h, w) with NNPACK where it applies, else as ``nn.Conv2d``."""
        if nnpack_applies(self, input, conv_impl()):
            return _nnpack_conv(input, weight, bias, self.padding)
        return super()._conv_forward(input, weight, bias)


def preferred_memory_format(device: torch.device | str) -> torch.memory_format:
    """Activation layout that runs BasicVSR++ inference fastest on ``device``.

    NCHW on a CPU where NNPACK runs the convolutions (it takes NCHW; measured 5.9 s vs 6.9 s per
    720p frame for c64n7 on a 2-core AVX2 EPYC), channels-last elsewhere (oneDNN's and cuDNN's
    NHWC kernels; about 2x faster than NCHW on the CPU without NNPACK).
    """
    if torch.device(device).type == "cpu" and conv_impl() != "native" and nnpack_works():
        return torch.contiguous_format
    return torch.channels_last


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo).

    Without it oneDNN emulates bf16 convolutions: measured 13x slower than float32 for a 64->64
    3x3 convolution at 180x320 on a 2-core AVX2 EPYC (329 ms vs 25 ms, channels-last).
    """
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return "AMX" in torch.backends.cpu.get_cpu_capability()
