"""``Conv2d``: ``nn.Conv2d`` with faster CPU float32 inference paths (Winograd, NNPACK, GEMM + shifts).

On CPUs without AVX-512/AMX (oneDNN has no Winograd kernels for AVX2), a direct 3x3 convolution
runs near the FMA peak, so the only way to go faster is fewer multiplications:

- the project's Winograd C kernel (:mod:`.winograd`; Lavin & Gray, "Fast Algorithms for
  Convolutional Neural Networks", CVPR 2016, eq. 7: ``Y = A^T [(G g G^T) * (B^T d B)] A``;
  F(6x6, 3x3) on 8x8 input tiles by default, 5.06x fewer multiplications, or F(4x4, 3x3), 4x) for
  every 'same' 3x3 layer with at least 16 outputs or a channels-last input, in either layout, with
  the following ReLU/LeakyReLU, residual add and pixel shuffle fused into its store
  (:meth:`Conv2d.forward_fused`, :func:`run_sequential`);
- NNPACK's FFT 16x16 for larger kernels (SPyNet's 7x7), exact up to float32 rounding, and its
  Winograd F(6x6, 3x3) under ``conv_impl='nnpack'``.

Layers with few output channels (``conv_last``, 64->3 at 720p) are memory-bound instead; for them
one GEMM over all taps plus shifted adds reads the input once (:func:`_gemm_shift_conv`).

Measured on a 2-core AVX2 EPYC (``python benchmarks/bench_inference.py --conv-only`` prints it per
layer shape): a 64->64 3x3 layer at 180x320 takes 10-13 ms (Winograd, NHWC) vs 20 ms (NNPACK) and
27 ms (oneDNN direct); the whole c64n7 network 6.7 s (oneDNN) -> 4.0 s per 720p frame. Winograd
costs some accuracy, about 1e-5 relative error per layer instead of ~1e-7 (c64n7 output max
|diff| ~5e-6 against the direct convolutions; the benchmark prints the PSNR), so these paths serve
inference only and can be switched off.

Selection (``Conv2d.conv_impl``, set by the CPU backend from its settings, ``models/backends``):
``'auto'`` (default) takes a fast path where it applies and measured faster (see
:func:`fast_path`), ``'native'`` always calls ``F.conv2d`` (oneDNN), ``'nnpack'`` takes NNPACK
wherever it applies, ``'winograd'`` only the Winograd kernel. The path is chosen per call from the
inputs; parameters and state dicts are those of ``nn.Conv2d``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from basicvsr_archival.utils.threads import one_cpu_thread

from .winograd import DEFAULT_TILE, TILES, out_fits, winograd_available, winograd_conv3x3

CONV_IMPLS = ("auto", "native", "nnpack", "winograd")


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


def fast_path(conv: nn.Conv2d, x: Tensor, impl: str) -> str | None:
    """The fast CPU path of this call of ``conv`` on ``x`` under ``impl``: 'winograd'/'nnpack'/'gemm'/None.

    Both need float32 CPU inference (no autograd, not tracing/exporting/compiling), a 4-D input,
    stride 1, dilation 1, groups 1 and zero padding of at most ``kernel // 2``. ``'auto'`` and
    ``'winograd'`` take the Winograd kernel (:mod:`.winograd`, either layout) for 'same' 3x3 layers
    with at least 16 outputs or a channels-last input; ``impl='nnpack'`` takes NNPACK wherever it
    applies. ``'auto'`` else only where it measured faster than oneDNN, on NCHW inputs (an NHWC one
    would need a copy): NNPACK for larger kernels (SPyNet's 7x7), and 'gemm'
    (:func:`_gemm_shift_conv`) for 'same' 3x3 layers with fewer outputs (the 64->3 ``conv_last`` at
    720p: 106 ms vs 220 ms direct).
    """
    if impl == "native":
        return None
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return None
    if torch.compiler.is_compiling():
        return None
    weight = conv.weight
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32 or x.dim() != 4:
        return None
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return None
    kh, kw = conv.kernel_size
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or conv.padding_mode != "zeros":
        return None
    if not isinstance(conv.padding, tuple) or conv.padding[0] > kh // 2 or conv.padding[1] > kw // 2:
        return None
    # few outputs (conv_last, 64->3): Winograd on channels-last inputs (63 vs 72 ms at 720p), GEMM on NCHW
    many_outputs = conv.out_channels >= 16 or not x.is_contiguous()
    winograd_fits = (kh, kw) == (3, 3) and conv.padding == (1, 1) and many_outputs
    if winograd_fits and impl in ("auto", "winograd") and winograd_available():
        return "winograd"
    if impl == "winograd":
        return None
    if impl == "auto":
        if not x.is_contiguous():
            return None
        if (kh, kw) == (3, 3) and conv.out_channels < 16:
            return "gemm" if conv.padding == (1, 1) else None
    return "nnpack" if nnpack_works() else None


def nnpack_applies(conv: nn.Conv2d, x: Tensor, impl: str) -> bool:
    """Whether this call of ``conv`` on ``x`` runs through NNPACK under ``impl`` (see :func:`fast_path`)."""
    return fast_path(conv, x, impl) == "nnpack"


def _gemm_shift_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """'Same' convolution with few outputs as one GEMM and shifted adds: (n, c_in, h, w) -> (n, c_out, h, w).

    y[o, p] = b[o] + sum_{i,j} (W_ij x)[o, p + (i - kh//2, j - kw//2)]  (zero outside the image):

    1. one GEMM gives every tap's partial output, z = W' x with W' the weight as (kh*kw*c_out, c_in):
       it reads ``x`` once (an im2col would write it kh*kw times);
    2. the kh*kw shifted (c_out, h, w) planes of z are added into the output, clipped at the borders.
    """
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    wmat = weight.permute(2, 3, 0, 1).reshape(kh * kw * c_out, c_in)  # rows ordered (i, j, o)
    out = x.new_empty(n, c_out, h, w)
    for b_i in range(n):
        # (kh*kw*c_out, c_in) @ (c_in, h*w) -> (kh, kw, c_out, h, w); one thread: MKL's split of this
        # GEMM changes its rounding with the thread count (seen at 16 threads), and it is memory-bound
        with one_cpu_thread(x):
            z = torch.mm(wmat, x[b_i].reshape(c_in, h * w)).view(kh, kw, c_out, h, w)
        o = out[b_i]  # (c_out, h, w)
        if bias is None:
            o.zero_()
        else:
            o.copy_(bias.view(c_out, 1, 1).expand(c_out, h, w))
        for i in range(kh):
            dy = i - kh // 2
            y0, y1 = max(0, -dy), h - max(0, dy)  # output rows whose input row y + dy exists
            for j in range(kw):
                dx = j - kw // 2
                x0, x1 = max(0, -dx), w - max(0, dx)
                o[:, y0:y1, x0:x1] += z[i, j, :, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    return out


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
    """``nn.Conv2d`` (same arguments, parameters and state dict) with fast paths for CPU float32 inference.

    Shapes: input ``(n, c_in, h, w)`` -> output ``(n, c_out, h_out, w_out)``, as ``nn.Conv2d``. The
    path is chosen per call (:func:`fast_path`) under ``conv_impl`` (one of :data:`CONV_IMPLS`) and
    ``winograd_tile`` (4 or 6), attributes the CPU backend sets from its settings; training, other
    devices and dtypes always use ``F.conv2d``.
    """

    conv_impl: str = "auto"
    winograd_tile: int = DEFAULT_TILE

    def configure(self, conv_impl: str, winograd_tile: int) -> Conv2d:
        """Set this layer's implementation and Winograd tile (checked); returns the layer."""
        if conv_impl not in CONV_IMPLS:
            raise ValueError(f"conv_impl={conv_impl!r}: use one of {', '.join(CONV_IMPLS)}")
        if winograd_tile not in TILES:
            raise ValueError(f"winograd_tile={winograd_tile!r}: use one of {TILES}")
        self.conv_impl, self.winograd_tile = conv_impl, winograd_tile
        return self

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Convolve ``input`` (n, c_in, h, w) on the fast path that applies, else as ``nn.Conv2d``."""
        path = fast_path(self, input, self.conv_impl)
        if path == "winograd":
            return winograd_conv3x3(input, weight, bias, tile=self.winograd_tile)
        if path == "nnpack":
            return _nnpack_conv(input, weight, bias, self.padding)
        if path == "gemm":
            return _gemm_shift_conv(input, weight, bias)
        return super()._conv_forward(input, weight, bias)

    def forward_fused(
        self,
        x: Tensor | Sequence[Tensor],
        act: str | None = None,
        slope: float = 0.1,
        residual: Tensor | None = None,
        shuffle: int = 1,
        out: Tensor | None = None,
    ) -> Tensor:
        """``pixel_shuffle(act(self(x)), shuffle) + residual``, one fused call on the Winograd path.

        ``x``: a tensor or a list of tensors to concatenate along channels (the Winograd path reads
        them without the copy). ``act``: None, 'relu' or 'lrelu' (negative slope ``slope``).
        ``out``: a spent tensor of the result's shape and layout the fast path may write into (saves
        fresh pages for big frames); ignored elsewhere. Elsewhere (training, other devices, dtypes)
        the steps run as separate ops, so results and gradients equal those of the unfused modules.
        """
        parts = [x] if isinstance(x, Tensor) else list(x)
        fast = all(fast_path(self, p, self.conv_impl) == "winograd" for p in parts)
        if fast and (residual is None or not residual.requires_grad):
            if out is not None and not out_fits(out, parts, self.weight, shuffle):
                out = None
            return winograd_conv3x3(
                parts if len(parts) > 1 else parts[0],
                self.weight,
                self.bias,
                act=act,
                slope=slope,
                residual=residual,
                shuffle=shuffle,
                out=out,
                tile=self.winograd_tile,
            )
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        out = self(x)
        if act == "relu":
            out = F.relu(out, inplace=True)
        elif act == "lrelu":
            out = F.leaky_relu(out, slope, inplace=True)
        elif act is not None:
            raise ValueError(f"act={act!r}: use None, 'relu' or 'lrelu'")
        if shuffle > 1:
            out = F.pixel_shuffle(out, shuffle)
        if residual is None:
            return out
        # in place on the fresh conv output (its backward does not need it); ReLU's backward needs its result
        return out.add_(residual) if act is None and shuffle == 1 else out + residual


def run_sequential(seq: nn.Sequential, x: Tensor | Sequence[Tensor]) -> Tensor:
    """``seq(x)``, with each ``Conv2d`` followed by a ``ReLU``/``LeakyReLU`` run as one fused call.

    ``x`` may be a list of tensors: ``seq(torch.cat(x, 1))``, the concatenation fused into a first
    ``Conv2d`` on the Winograd path.
    """
    mods = list(seq)
    if not isinstance(x, Tensor) and not (mods and isinstance(mods[0], Conv2d)):
        x = torch.cat(list(x), dim=1)
    i = 0
    while i < len(mods):
        mod = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(mod, Conv2d) and isinstance(nxt, nn.ReLU):
            x, i = mod.forward_fused(x, "relu"), i + 2
        elif isinstance(mod, Conv2d) and isinstance(nxt, nn.LeakyReLU):
            x, i = mod.forward_fused(x, "lrelu", nxt.negative_slope), i + 2
        else:
            x, i = mod(x), i + 1
    return x


def preferred_memory_format(device: torch.device | str, conv_impl: str = "auto") -> torch.memory_format:
    """Activation layout that runs BasicVSR++ inference fastest on ``device`` under ``conv_impl``.

    Channels-last on a CPU where the Winograd kernel builds (its loads and stores vectorise over
    channels: c64n7 3.5-4.0 s per 720p frame vs 5.1 s in NCHW on a 2-core AVX2 EPYC) and on GPUs
    (cuDNN's NHWC kernels); NCHW on a CPU without it where NNPACK runs (NNPACK takes NCHW: 5.9 s vs
    6.9 s); channels-last elsewhere (oneDNN's NHWC kernels, about 2x faster than NCHW).
    """
    dev = torch.device(device)
    if dev.type == "cpu" and conv_impl in ("auto", "winograd") and winograd_available():
        return torch.channels_last
    if dev.type == "cpu" and conv_impl != "native" and nnpack_works():
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
