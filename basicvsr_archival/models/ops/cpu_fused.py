"""Float32 CPU inference kernels of BasicVSR++'s sampling ops (``dcn_cpu.c``, built at install).

Two ops, each a C sampling kernel run by a small pool of worker threads over chunks of output
pixels (ctypes releases the GIL; each worker runs single-threaded GEMMs so no OpenMP team spins
against the sampling threads):

- :func:`deform_conv_cpu_fused`: modulated deformable convolution with given offsets and masks;
- :func:`flow_guided_deform_conv_cpu`: BasicVSR++'s second-order alignment, with the offsets
  ``mrm * tanh(o) + flow`` and masks ``sigmoid(m)`` computed inside the kernel from the raw
  ``conv_offset`` output, so the offset/mask tensors (and their five elementwise passes over
  ~50 MB each at 180x320) never exist.

Columns are sampled into a per-thread cache-sized buffer (``_FUSED_CHUNK_BYTES``) and turned into
output pixels by one GEMM per chunk.  Chunk boundaries are fixed, so results do not depend on
which worker runs which chunk (bit-identical across runs).  Outputs keep the memory format of the
input feature map (NCHW or channels-last).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from .cpu_kernel import load_cpu_kernel

_FUSED_CHUNK_BYTES = 8 << 20  # columns per chunk and worker: cache-sized
_WORKER = threading.local()


def _init_worker() -> None:
    """Workers run their GEMMs themselves: no OpenMP team that would spin against the sampling threads."""
    torch.set_num_threads(1)


@functools.lru_cache(maxsize=4)
def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """Threads that sample and multiply chunks of output pixels (ctypes and torch release the GIL)."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dcn", initializer=_init_worker)


def _worker_buffer(rows: int, width: int, dtype: torch.dtype) -> Tensor:
    """This worker thread's reusable column buffer of shape (rows, width)."""
    buf = getattr(_WORKER, "cols", None)
    if buf is None or buf.numel() < rows * width or buf.dtype != dtype:
        buf = torch.empty(rows * width, dtype=dtype)
        _WORKER.cols = buf
    return buf[: rows * width].view(rows, width)


def _parallel(task: Callable[[int], None], total: int, chunk: int) -> None:
    """Run ``task(p0)`` for ``p0 = 0, chunk, 2 * chunk, ... < total`` on the worker threads."""
    pool = _thread_pool(max(1, torch.get_num_threads()))
    for job in [pool.submit(task, p0) for p0 in range(0, total, chunk)]:
        job.result()


def _columns_gemm(
    fill: Callable[[Tensor, int, int], None], total: int, weight: Tensor, bias: Tensor | None
) -> Tensor:
    """Output pixels (total, c_out) = columns @ weight as (K * c_in, c_out) (+ bias), chunk by chunk.

    ``fill(cols, p0, p1)`` writes the columns (p1 - p0, K * c_in), ordered (k, c_in), of the
    output pixels ``p0 <= p < p1`` into ``cols``.
    """
    c_out, c_in, kh, kw = weight.shape
    width = kh * kw * c_in
    wmat = weight.permute(2, 3, 1, 0).reshape(width, c_out)  # (K*c_in, c_out), rows ordered (k, c_in)
    out = torch.empty(total, c_out, dtype=torch.float32)  # (P, c_out)
    chunk = max(1, min(total, _FUSED_CHUNK_BYTES // (width * 4)))

    def run_chunk(p0: int) -> None:
        p1 = min(total, p0 + chunk)
        cols = _worker_buffer(chunk, width, torch.float32)  # (P_chunk, K*c_in)
        fill(cols, p0, p1)
        with torch.inference_mode():  # grad modes are per thread; this path never needs autograd
            if bias is None:
                torch.mm(cols[: p1 - p0], wmat, out=out[p0:p1])
            else:
                torch.addmm(bias, cols[: p1 - p0], wmat, out=out[p0:p1])

    _parallel(run_chunk, total, chunk)
    return out


def _nhwc(x: Tensor) -> Tensor:
    """(n, c, h, w) -> its (n, h, w, c) contiguous view (free for channels-last tensors)."""
    return x.permute(0, 2, 3, 1).contiguous()


def _as_nchw(out: Tensor, n: int, h: int, w: int) -> Tensor:
    """(n*h*w, c) pixels -> (n, c, h, w) view in channels-last memory."""
    return out.view(n, h, w, -1).permute(0, 3, 1, 2)


def deform_conv_cpu_fused(
    x: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    deform_groups: int,
) -> Tensor:
    """DCNv2 (groups == 1) with mmcv-layout offsets and masks: (n, c_in, h, w) -> (n, c_out, h_out, w_out).

    The result keeps the caller's memory format (free for channels-last inputs, one copy for NCHW).
    """
    lib = load_cpu_kernel()
    n, c_in, h, w = x.shape
    kh, kw = weight.shape[2:]
    h_out, w_out = offset.shape[2], offset.shape[3]
    x_cl = _nhwc(x)  # (n, h, w, c_in)
    offset, mask = offset.contiguous(), mask.contiguous()
    shape = (h, w, c_in, h_out, w_out, kh, kw, *stride, *padding, *dilation, deform_groups)

    def fill(cols: Tensor, p0: int, p1: int) -> None:
        lib.dcn_im2col_f32(
            x_cl.data_ptr(), offset.data_ptr(), mask.data_ptr(), cols.data_ptr(), *shape, p0, p1, p0
        )

    out = _as_nchw(_columns_gemm(fill, n * h_out * w_out, weight, bias), n, h_out, w_out)
    return out if x.is_contiguous(memory_format=torch.channels_last) else out.contiguous()


def flow_guided_deform_conv_cpu(
    x: Tensor,
    raw_offset: Tensor,
    flow_1: Tensor,
    flow_2: Tensor,
    max_residue_magnitude: float,
    weight: Tensor,
    bias: Tensor | None,
    padding: tuple[int, int],
    deform_groups: int,
) -> Tensor:
    """BasicVSR++ alignment DCN (stride 1, dilation 1, same size) from the raw ``conv_offset`` output.

    Shapes: ``x`` (n, c_in, h, w); ``raw_offset`` (n, 3 * G * K, h, w) = (o1, o2, mask logits);
    ``flow_1``/``flow_2`` (n, 2, h, w) as (dx, dy) -> (n, c_out, h, w) in the memory format of ``x``.
    Equal to ``modulated_deform_conv2d(x, mrm * tanh(cat(o1, o2)) + flows, sigmoid(m), ...)``
    (offset error < 3e-6 px from the kernel's exp, see ``dcn_cpu.c``).
    """
    lib = load_cpu_kernel()
    n, c_in, h, w = x.shape
    kh, kw = weight.shape[2:]
    x_cl = _nhwc(x)  # (n, h, w, c_in)
    # the kernel reads the raw offsets in either layout: (n, h, w, 3GK) or NCHW planes (n, 3GK, h, w)
    if raw_offset.is_contiguous(memory_format=torch.channels_last):
        raw, strides = raw_offset, (1, raw_offset.shape[1])
    else:
        raw, strides = raw_offset.contiguous(), (h * w, 1)
    f1, f2 = flow_1.contiguous(), flow_2.contiguous()  # (n, 2, h, w)
    mrm = float(max_residue_magnitude)
    shape = (h, w, c_in, kh, kw, *padding, deform_groups, *strides)

    def fill(cols: Tensor, p0: int, p1: int) -> None:
        lib.dcn_flow_guided_im2col_f32(
            x_cl.data_ptr(),
            raw.data_ptr(),
            f1.data_ptr(),
            f2.data_ptr(),
            mrm,
            cols.data_ptr(),
            *shape,
            p0,
            p1,
            p0,
        )

    out = _as_nchw(_columns_gemm(fill, n * h * w, weight, bias), n, h, w)
    return out if x.is_contiguous(memory_format=torch.channels_last) else out.contiguous()


def flow_warp_cpu(x: Tensor, flow: Tensor) -> Tensor:
    """mmedit's ``flow_warp`` (bilinear, zero padding, align_corners) of a channels-last ``x`` (n, c, h, w).

    ``flow`` (n, h, w, 2) in pixels, (dx, dy); the result is channels-last like ``x``. Equal to the
    ``grid_sample`` formulation up to float rounding (same normalisation of the positions).
    """
    lib = load_cpu_kernel()
    n, c, h, w = x.shape
    x_cl = _nhwc(x)  # (n, h, w, c): free for a channels-last x
    fs = flow.stride()  # (n, h, w, 2) strides; pixel (y, x) at y * fs[1] + x * fs[2]
    if fs[1] != w * fs[2]:
        flow = flow.contiguous()
        fs = flow.stride()
    out = torch.empty(n * h * w, c, dtype=torch.float32)  # (P, c)
    total = n * h * w
    chunk = max(1, -(-total // (4 * max(1, torch.get_num_threads()))))

    def run_chunk(p0: int) -> None:
        p1 = min(total, p0 + chunk)
        lib.flow_warp_f32(
            x_cl.data_ptr(), flow.data_ptr(), out.data_ptr(), h, w, c, fs[0], fs[2], fs[3], p0, p1
        )

    _parallel(run_chunk, total, chunk)
    return _as_nchw(out, n, h, w)


def fused_cpu_ok(*tensors: Tensor) -> bool:
    """Whether the fused kernels may run: float32 CPU tensors, no autograd, no tracing/export/compile."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return False
    grad = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if t.device.type != "cpu" or t.dtype != torch.float32 or (grad and t.requires_grad):
            return False
    return load_cpu_kernel() is not None
