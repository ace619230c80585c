"""Modulated deformable convolution (DCNv2) with mmcv's signature, offset layout and semantics.

    y(p) = b + sum_{k=1..K} w_k * x(p + p_k + dp_k) * m_k        (Zhu et al., "Deformable ConvNets
                                                                 v2", CVPR 2019, eq. 3)

``x(.)`` is bilinear interpolation with zeros outside the image, ``dp_k`` the learned offset and
``m_k`` the modulation mask of kernel point ``k``, shared by the channels of one *deform group*.
Layouts are mmcv's: ``offset`` is (n, deform_groups * K * 2, h_out, w_out) with the channels
ordered (group, kernel point, [dy, dx]); ``mask`` is (n, deform_groups * K, h_out, w_out).

Implementations (``impl`` argument, ``None`` = ``'auto'``):

- ``'pure'``: PyTorch ops only (``grid_sample`` + one GEMM per chunk of output rows); any
  device and dtype, autograd, ONNX-exportable.  Columns are built chunk by chunk so at most
  ``chunk_mb`` (default :data:`DEFAULT_CHUNK_MB`) MB of them exist at once; when gradients are
  needed each chunk is recomputed in backward (activation checkpointing) so training memory
  stays bounded too.
- ``'cpu_fused'``: float32 CPU inference (``cpu_fused.py``, imported only when asked for).  The
  sampling runs in a small C kernel (``dcn_cpu.c``) that computes each offset/weight once per
  deform group and writes the modulated columns straight into a cache-sized buffer, which one
  GEMM turns into output pixels.  Falls back to ``'pure'`` when gradients are needed.  The CPU
  backend (``models/backends``) selects it; the plain network never does by itself.
- ``'mmcv'`` / ``'torchvision'``: the compiled ops of those packages, used by ``'auto'`` on CUDA
  when they import *and* pass a self-check against the pure path.  On the CPU ``'auto'`` never
  picks them: their CPU kernels are slower than ``'pure'``.
- ``'auto'`` (default): CUDA -> mmcv, torchvision, pure; CPU -> pure.  While tracing, exporting
  to ONNX or compiling, always pure.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

IMPLS = ("auto", "pure", "cpu_fused", "mmcv", "torchvision")
DEFAULT_CHUNK_MB = 512.0  # sampled columns held at once by the pure path (MB)


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """``3 -> (3, 3)``; tuples pass through."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _chunk_budget_bytes(chunk_mb: float | None) -> int:
    """Upper bound on the bytes of sampled columns held at once (``chunk_mb``, None = the default)."""
    return int(float(DEFAULT_CHUNK_MB if chunk_mb is None else chunk_mb) * (1 << 20))


def _out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    """Output length of a convolution along one axis."""
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def pure_chunk_rows(
    n: int, c_in: int, k: int, deform_groups: int, h_out: int, w_out: int, itemsize: int,
    chunk_mb: float | None = None,
) -> int:  # fmt: skip
    """Output rows per chunk of the pure path so that one chunk's buffers fit the budget.

    Per output row the chunk holds the columns (n * c_in * k * w_out values) plus the grid and
    the mask (3 values per deform group, kernel point and pixel), all in ``itemsize`` bytes.
    """
    row_bytes = n * w_out * k * (c_in + 3 * deform_groups) * itemsize
    return max(1, min(h_out, _chunk_budget_bytes(chunk_mb) // max(row_bytes, 1)))


def _pure_rows(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    r0: int,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    deform_groups: int,
) -> Tensor:
    """Pure-PyTorch DCNv2 for the output rows ``r0 : r0 + offset.shape[2]``.

    1. sampling points ``p_k + dp_k`` in pixels, (n, G, K, hc, w_out) each for y and x;
    2. bilinear sampling of each deform group with ``grid_sample`` (zeros outside, which is
       mmcv's rule), coordinates normalised for ``align_corners=False`` (valid for any size);
    3. modulation by the mask and one batched GEMM with the weight as (O, C_in * K).
    """
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    k = kh * kw
    hc, w_out = offset.shape[2], offset.shape[3]
    g = deform_groups
    cg = c_in // g
    coord_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    # 1. sampling points; offset (n, g*k*2, hc, w_out) -> (n, g, k, 2, hc, w_out)
    off = offset.to(coord_dtype).reshape(n, g, k, 2, hc, w_out)
    ar = functools.partial(torch.arange, device=x.device, dtype=coord_dtype)
    ky = (ar(kh) * dilation[0]).repeat_interleave(kw).view(k, 1, 1)  # (k, 1, 1)
    kx = (ar(kw) * dilation[1]).repeat(kh).view(k, 1, 1)  # (k, 1, 1)
    base_y = ar(r0, r0 + hc).view(1, hc, 1) * stride[0] - padding[0] + ky  # (k, hc, 1)
    base_x = ar(w_out).view(1, 1, w_out) * stride[1] - padding[1] + kx  # (k, 1, w_out)
    py = base_y + off[:, :, :, 0]  # (n, g, k, hc, w_out)
    px = base_x + off[:, :, :, 1]  # (n, g, k, hc, w_out)
    # 2. normalised grid (n*g, k*hc, w_out, 2) and sampling of (n*g, cg, h, w)
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1)
    grid = grid.view(n * g, k * hc, w_out, 2)
    xs = x.to(coord_dtype).reshape(n * g, cg, h, w)  # (n*g, cg, h, w)
    cols = F.grid_sample(xs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # cols (n*g, cg, k*hc, w_out) -> (n, g, cg, k, hc*w_out)
    # mask (n, g*k, hc, w_out) -> (n, g, 1, k, hc*w_out)
    cols = cols.view(n, g, cg, k, hc * w_out) * mask.to(coord_dtype).reshape(n, g, 1, k, hc * w_out)
    # 3. GEMM: channel order of cols is (c_in, k), the order of weight.reshape(c_out, c_in*k)
    cols = cols.to(x.dtype).view(n, groups, (c_in // groups) * k, hc * w_out)  # (n, groups, c_in/groups*k, P)
    wmat = weight.reshape(
        groups, c_out // groups, (c_in // groups) * k
    )  # (groups, c_out/groups, c_in/groups*k)
    out = torch.matmul(wmat, cols)  # (n, groups, c_out/groups, P)
    out = out.reshape(n, c_out, hc, w_out)  # (n, c_out, hc, w_out)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out


def _deform_conv_pure(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    deform_groups: int,
    chunk_mb: float | None = None,
) -> Tensor:
    """Pure-PyTorch path, in chunks of output rows bounded by the column budget (``chunk_mb``)."""
    n, c_in = x.shape[:2]
    k = weight.shape[2] * weight.shape[3]
    h_out, w_out = offset.shape[2], offset.shape[3]
    rows = pure_chunk_rows(n, c_in, k, deform_groups, h_out, w_out, max(4, x.element_size()), chunk_mb)
    if rows >= h_out:
        return _pure_rows(x, offset, mask, weight, bias, 0, stride, padding, dilation, groups, deform_groups)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, offset, mask, weight, bias)
    )
    outs = []
    for r0 in range(0, h_out, rows):
        args = (x, offset[:, :, r0 : r0 + rows], mask[:, :, r0 : r0 + rows], weight, bias, r0)
        rest = (stride, padding, dilation, groups, deform_groups)
        if needs_grad:  # recompute the chunk's columns in backward instead of keeping them all
            outs.append(checkpoint(_pure_rows, *args, *rest, use_reentrant=False))
        else:
            outs.append(_pure_rows(*args, *rest))
    return torch.cat(outs, dim=2)


def _call_mmcv(x, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups):
    from mmcv.ops import modulated_deform_conv2d as mmcv_dcn

    return mmcv_dcn(x, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups)


def _call_torchvision(x, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups):
    from torchvision.ops import deform_conv2d

    return deform_conv2d(
        x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask
    )


_EXTERNAL = {"mmcv": _call_mmcv, "torchvision": _call_torchvision}


@functools.cache
def external_impl_works(name: str, device_type: str) -> bool:
    """Whether ``mmcv``/``torchvision``'s op imports and matches the pure path on a tiny problem."""
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, 4, 5, 6, generator=gen)
        offset = torch.randn(1, 2 * 2 * 9, 5, 6, generator=gen) * 2
        mask = torch.rand(1, 2 * 9, 5, 6, generator=gen)
        weight = torch.randn(3, 4, 3, 3, generator=gen)
        bias = torch.randn(3, generator=gen)
        args = ((1, 1), (1, 1), (1, 1), 1, 2)
        ref = _deform_conv_pure(x, offset, mask, weight, bias, *args)
        dev = torch.device(device_type)
        got = _EXTERNAL[name](*(t.to(dev) for t in (x, offset, mask, weight, bias)), *args)
        return bool(torch.allclose(got.cpu().float(), ref, atol=1e-4, rtol=1e-4))
    except Exception:
        return False


def resolve_impl(impl: str | None, x: Tensor, needs_grad: bool, groups: int) -> str:
    """The implementation ``impl`` (None = ``'auto'``) comes down to for this call."""
    impl = impl or "auto"
    if impl not in IMPLS:
        raise ValueError(f"unknown deformable-conv implementation {impl!r}; choose one of {IMPLS}")
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return "pure"  # exporters and compilers see only PyTorch ops
    fused_ok = x.device.type == "cpu" and x.dtype == torch.float32 and groups == 1 and not needs_grad
    if impl == "cpu_fused":
        from .cpu_kernel import load_cpu_kernel  # the C kernel only when asked for by name

        return "cpu_fused" if fused_ok and load_cpu_kernel() is not None else "pure"
    if impl in _EXTERNAL and not external_impl_works(impl, x.device.type):
        raise RuntimeError(f"deformable-conv implementation {impl!r} does not import or fails its self-check")
    if impl != "auto":
        return impl
    if x.device.type == "cpu":
        return "pure"
    for name in ("mmcv", "torchvision"):
        if external_impl_works(name, x.device.type):
            return name
    return "pure"


def modulated_deform_conv2d(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    deform_groups: int = 1,
    impl: str | None = None,
    chunk_mb: float | None = None,
) -> Tensor:
    """Modulated deformable convolution with mmcv's signature: (n, c_in, h, w) -> (n, c_out, h_out, w_out).

    ``impl``: see the module docstring; ``chunk_mb``: the pure path's column budget (None = default).
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    n, c_in, h, w = x.shape
    c_out, c_in_g, kh, kw = weight.shape
    h_out = _out_size(h, kh, stride[0], padding[0], dilation[0])
    w_out = _out_size(w, kw, stride[1], padding[1], dilation[1])
    k = kh * kw
    if c_in % deform_groups or c_in != c_in_g * groups or c_out % groups:
        raise ValueError(
            f"channels do not fit: input {c_in}, weight {tuple(weight.shape)}, groups {groups}, "
            f"deform_groups {deform_groups}"
        )
    if tuple(offset.shape) != (n, deform_groups * k * 2, h_out, w_out):
        raise ValueError(
            f"offset must be {(n, deform_groups * k * 2, h_out, w_out)}, got {tuple(offset.shape)}"
        )
    if tuple(mask.shape) != (n, deform_groups * k, h_out, w_out):
        raise ValueError(f"mask must be {(n, deform_groups * k, h_out, w_out)}, got {tuple(mask.shape)}")
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, offset, mask, weight, bias)
    )
    chosen = resolve_impl(impl, x, needs_grad, groups)
    if chosen == "cpu_fused":
        from .cpu_fused import deform_conv_cpu_fused, fused_cpu_ok
    if chosen == "cpu_fused" and not fused_cpu_ok(x, offset, mask, weight, bias):
        chosen = "pure"  # e.g. bf16 offsets from an autocast conv_offset beside a float32 x
    if chosen == "cpu_fused" and x[0].numel() >= 2**31:
        chosen = "pure"  # the C kernel's corner offsets are 32-bit
    if chosen == "cpu_fused":
        return deform_conv_cpu_fused(x, offset, mask, weight, bias, stride, padding, dilation, deform_groups)
    if chosen in _EXTERNAL:
        return _EXTERNAL[chosen](
            x, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups
        )
    return _deform_conv_pure(
        x, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups, chunk_mb
    )


class ModulatedDeformConv2d(nn.Module):
    """Modulated deformable convolution layer, parameter-compatible with ``mmcv.ops.ModulatedDeformConv2d``.

    Args:
        in_channels: channels of the input ``x`` (n, in_channels, h, w).
        out_channels: channels of the output (n, out_channels, h_out, w_out).
        kernel_size: int or (kh, kw).
        stride, padding, dilation: int or pairs, as in ``nn.Conv2d``.
        groups: convolution groups.
        deform_groups: groups of input channels that share one offset/mask per kernel point.
        bias: whether to learn a bias.
        impl: implementation (see the module docstring); ``None`` = ``'auto'``.
        chunk_mb: column budget of the pure path in MB (``None`` = :data:`DEFAULT_CHUNK_MB`).

    ``forward(x, offset, mask)``: offset (n, deform_groups*kh*kw*2, h_out, w_out) ordered
    (group, kernel point, [dy, dx]); mask (n, deform_groups*kh*kw, h_out, w_out) in [0, 1].
    Parameters: ``weight`` (out_channels, in_channels // groups, kh, kw), ``bias`` (out_channels,).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        deform_groups: int = 1,
        bias: bool = True,
        impl: str | None = None,
        chunk_mb: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deform_groups = deform_groups
        self.impl = impl
        self.chunk_mb = chunk_mb
        # mmcv keeps these for nn.Conv2d-like introspection
        self.transposed = False
        self.output_padding = (0, 0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv's initialisation: U(-1/sqrt(n), 1/sqrt(n)) with n = in_channels * kh * kw, zero bias."""
        n = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        stdv = 1.0 / math.sqrt(n)
        nn.init.uniform_(self.weight, -stdv, stdv)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        """(n, c_in, h, w), offset, mask -> (n, c_out, h_out, w_out)."""
        return modulated_deform_conv2d(
            x,
            offset,
            mask,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.deform_groups,
            impl=self.impl,
            chunk_mb=self.chunk_mb,
        )

    def extra_repr(self) -> str:
        """Shown by ``print(module)``."""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"deform_groups={self.deform_groups}"
        )
