"""Winograd F(4x4, 3x3) convolution for CPU float32 inference, with fused activation and residual.

``winograd_conv3x3(x, weight, bias, act, slope, residual)`` computes
``act(conv2d(x, weight, bias, padding=1)) + residual`` for a 3x3 kernel, stride 1, in one pass of
the C kernel ``winograd_cpu.c`` (Lavin & Gray, CVPR 2016, eq. 7, F(4x4, 3x3): 4x fewer
multiplications than the direct convolution). The steps:

1. the weight is transformed once, ``U = G g G^T`` in float64 (cached per weight tensor and
   its version, so an in-place update invalidates it), laid out (36, c_in8, c_out16);
2. output tile rows are split across the worker threads of the fused DCN kernels; each runs the
   C kernel (input transform, 36 GEMMs, output transform, epilogue) block by block in L2;
3. the input is read in either layout; the output is channels-last if the input or the weight is
   (as PyTorch's own convolutions choose).

Accuracy: about 1e-5 relative error per layer against the direct convolution (float32 rounding
through the transforms; the tests bound it), so this path serves inference only.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
import weakref
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .cpu_fused import _parallel, _worker_buffer
from .cpu_kernel import load_winograd_kernel

logger = logging.getLogger(__name__)

ACTS = {None: 0, "relu": 1, "lrelu": 2}

# G of F(m x m, 3x3) by output tile size m: F(4x4, 3x3) (Lavin & Gray, section 4.2; points 0, 1,
# -1, 2, -2, infinity) and F(6x6, 3x3) (points 0, 1, -1, 1/2, -1/2, 2, -2, infinity; NNPACK's)
_G = {
    4: (
        (1 / 4, 0.0, 0.0),
        (-1 / 6, -1 / 6, -1 / 6),
        (-1 / 6, 1 / 6, -1 / 6),
        (1 / 24, 1 / 12, 1 / 6),
        (1 / 24, -1 / 12, 1 / 6),
        (0.0, 0.0, 1.0),
    ),
    6: (
        (1.0, 0.0, 0.0),
        (-2 / 9, -2 / 9, -2 / 9),
        (-2 / 9, 2 / 9, -2 / 9),
        (1 / 90, 1 / 45, 2 / 45),
        (1 / 90, -1 / 45, 2 / 45),
        (32 / 45, 16 / 45, 8 / 45),
        (32 / 45, -16 / 45, 8 / 45),
        (0.0, 0.0, 1.0),
    ),
}
TILES = tuple(_G)
DEFAULT_TILE = 6  # F(6x6, 3x3): 5.06x fewer multiplications; 4 is slightly more accurate
_TILE_BLOCK = 18  # tiles per block along a tile row: measured best or near it for 64..432 channels (F6)
_TASKS_PER_WORKER = 4  # tile-row ranges per worker thread: evens out uneven thread speeds

_cache: dict[tuple[int, int, int], tuple[weakref.ref, int, Tensor]] = {}
_cache_lock = threading.Lock()


def transform_weight(weight: Tensor, tile: int = 4) -> Tensor:
    """``U = G g G^T`` of a (c_out, c_in, 3, 3) weight as (a^2, c_in8, c_out16) float32, zero-padded.

    ``a = tile + 2``; row ``i * a + j`` of the first axis is tile position (i, j); channels are
    padded to multiples of 8 (inputs) and 16 (outputs, the GEMM's register block).
    """
    c_out, c_in = weight.shape[:2]
    g = torch.tensor(_G[tile], dtype=torch.float64)  # (a, 3)
    a = g.shape[0]
    u = torch.einsum("ik,ockl,jl->ijco", g, weight.detach().double(), g)  # (a, a, c_in, c_out)
    c_in8, c_out16 = -(-c_in // 8) * 8, -(-c_out // 16) * 16
    padded = torch.zeros(a, a, c_in8, c_out16, dtype=torch.float64)
    padded[:, :, :c_in, :c_out] = u
    return padded.reshape(a * a, c_in8, c_out16).float().contiguous()  # (a^2, c_in8, c_out16)


def _shuffle_order(t: Tensor, r: int) -> Tensor:
    """Output channels (first axis) reordered from PyTorch's ``c * r^2 + q`` to the kernel's ``q * C + c``."""
    c_out = t.shape[0]
    return t.reshape(c_out // (r * r), r * r, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


def _cached_transform(weight: Tensor, shuffle: int, tile: int) -> Tensor:
    """The transformed ``weight`` (shuffle-ordered), once per tensor and version (dropped with it)."""
    ordered = _shuffle_order(weight.detach(), shuffle) if shuffle > 1 else weight
    if weight.is_inference():  # no version counter to invalidate a cached transform by: recompute
        return transform_weight(ordered, tile)
    key = (id(weight), shuffle, tile)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0]() is weight and hit[1] == weight._version:
            return hit[2]
    u = transform_weight(ordered, tile)

    def drop(_ref: weakref.ref, key: tuple[int, int, int] = key) -> None:
        with _cache_lock:
            if _cache.get(key, (None,))[0] is _ref:
                del _cache[key]

    with _cache_lock:
        _cache[key] = (weakref.ref(weight, drop), weight._version, u)
    return u


def _channels_last(t: Tensor) -> bool:
    """Whether ``t`` is laid out channels-last (and not also plainly contiguous)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def output_spec(
    x: Tensor | Sequence[Tensor], weight: Tensor, shuffle: int = 1
) -> tuple[tuple[int, int, int, int], torch.memory_format]:
    """Shape and memory format of ``winograd_conv3x3(x, weight, shuffle=shuffle)``'s result.

    The format is PyTorch's rule for convolutions: channels-last if an input or the weight is.
    """
    parts = [x] if isinstance(x, Tensor) else list(x)
    n, _, h, w = parts[0].shape
    cl = any(_channels_last(p) for p in parts) or _channels_last(weight)
    shape = (n, weight.shape[0] // (shuffle * shuffle), h * shuffle, w * shuffle)
    return shape, torch.channels_last if cl else torch.contiguous_format


def out_fits(out: Tensor, x: Tensor | Sequence[Tensor], weight: Tensor, shuffle: int = 1) -> bool:
    """Whether ``out`` can hold ``winograd_conv3x3(x, weight, shuffle=shuffle)``: shape, dtype, format."""
    shape, fmt = output_spec(x, weight, shuffle)
    return tuple(out.shape) == shape and out.dtype == torch.float32 and out.is_contiguous(memory_format=fmt)


@functools.lru_cache(maxsize=1)
def winograd_available() -> bool:
    """Whether the Winograd C kernel builds, loads and passes a self-check against ``F.conv2d`` here.

    The check (once per process, ~1 ms) runs both tile sizes on a small two-input case in both
    layouts with partial tiles, so a miscompiled kernel falls back to the other paths.
    """
    if load_winograd_kernel() is None:
        return False
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode(False), torch.no_grad():  # ordinary tensors even if called in inference mode
        x = torch.randn(1, 12, 7, 9, generator=gen)
        weight = torch.randn(16, 12, 3, 3, generator=gen) / 10
        bias = torch.randn(16, generator=gen)
        ref = F.conv2d(x, weight, bias, padding=1)
        for tile in TILES:
            for xx in (x, x.contiguous(memory_format=torch.channels_last)):
                got = winograd_conv3x3([xx[:, :5], xx[:, 5:]], weight, bias, tile=tile)
                if not torch.allclose(got, ref, rtol=1e-3, atol=1e-3):
                    logger.warning("the Winograd kernel failed its self-check (tile %d); not using it", tile)
                    return False
    return True


def winograd_conv3x3(
    x: Tensor | Sequence[Tensor],
    weight: Tensor,
    bias: Tensor | None = None,
    act: str | None = None,
    slope: float = 0.1,
    residual: Tensor | None = None,
    shuffle: int = 1,
    out: Tensor | None = None,
    tile: int | None = None,
) -> Tensor:
    """``act(conv2d(x, weight, bias, padding=1)) + residual``: (n, c_in, h, w) -> (n, c_out, h, w).

    ``act`` is None, 'relu' or 'lrelu' (negative slope ``slope``); ``residual`` (n, c_out, h, w)
    or None. ``shuffle=r > 1`` fuses ``F.pixel_shuffle(., r)`` (applied before the residual):
    the result is (n, c_out / r^2, r * h, r * w). ``out``: a tensor of the result's shape and the
    memory format (:func:`output_spec`) to write into (else a new one). Float32 CPU tensors, 3x3 weight.
    ``x`` may be a list of tensors (n, c_i, h, w): the convolution of their channel concatenation,
    without materialising it (the kernel gathers from each).
    """
    lib = load_winograd_kernel()
    if lib is None:
        raise RuntimeError("the Winograd kernel is not available (no C compiler?)")
    parts = [x] if isinstance(x, Tensor) else list(x)
    n, _, h, w = parts[0].shape
    if any(p.dim() != 4 or p.shape[0] != n or p.shape[2:] != (h, w) for p in parts):
        raise ValueError(f"inputs {[tuple(p.shape) for p in parts]} differ in batch or size")
    c_in = sum(p.shape[1] for p in parts)
    c_out = weight.shape[0]
    if weight.shape[1:] != (c_in, 3, 3):
        raise ValueError(f"weight {tuple(weight.shape)} does not fit a 3x3 convolution of {c_in} channels")
    if shuffle < 1 or c_out % (shuffle * shuffle):
        raise ValueError(f"cannot pixel-shuffle {c_out} channels by {shuffle}")
    tile = DEFAULT_TILE if tile is None else tile
    if tile not in TILES:
        raise ValueError(f"tile={tile}: F(m x m, 3x3) exists for m in {TILES}")
    u = _cached_transform(weight, shuffle, tile)
    shape, fmt = output_spec(parts, weight, shuffle)
    # the kernel reads either layout, input by input
    parts = [
        p
        if p.is_contiguous() or p.is_contiguous(memory_format=torch.channels_last)
        else p.contiguous(memory_format=fmt)
        for p in parts
    ]
    if out is not None and not out_fits(out, parts, weight, shuffle):
        raise ValueError(f"out {tuple(out.shape)} is not a float32 {shape} tensor in the output layout")
    y = torch.empty(shape, dtype=torch.float32, memory_format=fmt) if out is None else out
    res = None
    if residual is not None:
        if residual.shape != y.shape:
            raise ValueError(f"residual {tuple(residual.shape)} does not match the output {tuple(y.shape)}")
        res = residual if residual.stride() == y.stride() else residual.contiguous(memory_format=fmt)
    b = None if bias is None else bias.detach()
    if b is not None and shuffle > 1:
        b = _shuffle_order(b, shuffle)
    b = None if b is None else b.contiguous()
    code = ACTS[act]
    c_in8, c_out16 = u.shape[1], u.shape[2]
    tb = _TILE_BLOCK
    scratch = lib.wino_scratch_floats(tile, tb, c_in8, c_out16)
    tile_rows = -(-h // tile)
    workers = max(1, torch.get_num_threads())
    step = max(1, -(-tile_rows // (workers * _TASKS_PER_WORKER)))
    ys = y.stride()  # strides (n, c, h, w), in elements
    # per input: channels and (channel, row, column) strides, in elements
    info = (ctypes.c_int64 * (4 * len(parts)))(*[v for p in parts for v in (p.shape[1], *p.stride()[1:])])

    def run(job: int) -> None:
        img, t0 = divmod(job, tile_rows)
        buf = _worker_buffer(1, scratch, torch.float32)
        ptrs = (ctypes.c_void_p * len(parts))(*[p[img].data_ptr() for p in parts])
        lib.wino_f32(
            ptrs,
            info,
            len(parts),
            u.data_ptr(),
            None if b is None else b.data_ptr(),
            None if res is None else res[img].data_ptr(),
            y[img].data_ptr(),
            h,
            w,
            c_out,
            ys[1],
            ys[2],
            ys[3],
            tile,
            code,
            float(slope),
            shuffle,
            tb,
            buf.data_ptr(),
            t0,
            min(tile_rows, t0 + step),
        )

    jobs = [img * tile_rows + t0 for img in range(n) for t0 in range(0, tile_rows, step)]
    _run_jobs(run, jobs)
    return y


def _run_jobs(run, jobs: list[int]) -> None:
    """Run ``run(job)`` for every job on the worker threads (see ``cpu_fused._parallel``)."""
    if len(jobs) == 1:
        run(jobs[0])
        return
    # _parallel runs task(p0) for p0 = 0, chunk, ...; map those indices onto the job list
    _parallel(lambda i: run(jobs[i]), len(jobs), 1)
