"""Modulated deformable convolution against mmcv's recorded outputs and an independent loop reference."""

import math

import pytest
import torch

from basicvsr_archival.models.ops import ModulatedDeformConv2d, modulated_deform_conv2d, resolve_impl
from basicvsr_archival.models.ops import modulated_deform_conv as mdc
from basicvsr_archival.models.ops.cpu_kernel import load_cpu_kernel

HAS_KERNEL = load_cpu_kernel() is not None
# a missing kernel skips the cpu_fused cases (and fails a CI run: tests/conftest.py)
CPU_IMPLS = [
    "pure",
    pytest.param(
        "cpu_fused",
        marks=[pytest.mark.kernels, pytest.mark.skipif(not HAS_KERNEL, reason="dcn_cpu kernel missing")],
    ),
]


def _assert_kernel_runs(impl, x, groups):
    """'cpu_fused' with one conv group must really run the C kernel, not fall back to 'pure'."""
    if impl == "cpu_fused" and groups == 1:
        assert resolve_impl(impl, x, needs_grad=False, groups=groups) == "cpu_fused"


def naive_dcn(x, offset, mask, weight, bias, stride, padding, dilation, groups, deform_groups):
    """Loop-by-loop DCNv2 straight from the definition (float64): mmcv's bilinear rule, zero outside."""
    x, offset, mask, weight = (t.double() for t in (x, offset, mask, weight))
    n, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    h_out = (h + 2 * padding - (dilation * (kh - 1) + 1)) // stride + 1
    w_out = (w + 2 * padding - (dilation * (kw - 1) + 1)) // stride + 1
    cg = c_in // deform_groups
    cols = torch.zeros(n, c_in, kh * kw, h_out, w_out, dtype=torch.float64)

    def pixel(b, c, y, xx):
        return x[b, c, y, xx] if 0 <= y < h and 0 <= xx < w else 0.0

    for b in range(n):
        for c in range(c_in):
            g = c // cg
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    for ho in range(h_out):
                        for wo in range(w_out):
                            py = (
                                ho * stride
                                - padding
                                + i * dilation
                                + offset[b, (g * kh * kw + k) * 2, ho, wo]
                            )
                            px = (
                                wo * stride
                                - padding
                                + j * dilation
                                + offset[b, (g * kh * kw + k) * 2 + 1, ho, wo]
                            )
                            if not (-1 < py < h and -1 < px < w):
                                continue
                            y0, x0 = math.floor(py), math.floor(px)
                            ly, lx = py - y0, px - x0
                            val = (
                                (1 - ly) * (1 - lx) * pixel(b, c, y0, x0)
                                + (1 - ly) * lx * pixel(b, c, y0, x0 + 1)
                                + ly * (1 - lx) * pixel(b, c, y0 + 1, x0)
                                + ly * lx * pixel(b, c, y0 + 1, x0 + 1)
                            )
                            cols[b, c, k, ho, wo] = val * mask[b, g * kh * kw + k, ho, wo]
    cin_g, cout_g = c_in // groups, c_out // groups
    out = torch.zeros(n, c_out, h_out, w_out, dtype=torch.float64)
    for gi in range(groups):
        wg = weight[gi * cout_g : (gi + 1) * cout_g].reshape(cout_g, -1)
        cg_cols = cols[:, gi * cin_g : (gi + 1) * cin_g].reshape(n, cin_g * kh * kw, h_out * w_out)
        out[:, gi * cout_g : (gi + 1) * cout_g] = (wg @ cg_cols).view(n, cout_g, h_out, w_out)
    return (out + bias.double().view(1, -1, 1, 1)).float()


@pytest.fixture(scope="module")
def official(shared_dir):
    """mmcv.ops.modulated_deform_conv2d forward and gradients recorded on random data."""
    return torch.load(shared_dir / "reference" / "dcn_official_io.pt")


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_forward_matches_mmcv(official, impl):
    _assert_kernel_runs(impl, official["x"], official["args"]["groups"])
    with torch.no_grad():
        out = modulated_deform_conv2d(
            official["x"], official["offset"], official["mask"], official["weight"], official["bias"],
            **official["args"], impl=impl,
        )  # fmt: skip
    assert out.shape == official["output"].shape == (2, 16, 13, 17)
    assert (out - official["output"]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("chunk_mb", [None, 0.001])
def test_gradients_match_mmcv(official, chunk_mb):
    """Backward of the pure path equals mmcv's, whole and in row chunks (with checkpointing)."""
    names = ["x", "offset", "mask", "weight", "bias"]
    inputs = {k: official[k].clone().requires_grad_(True) for k in names}
    # chunk_mb 0.001 -> one output row per chunk
    out = modulated_deform_conv2d(*(inputs[k] for k in names), **official["args"], chunk_mb=chunk_mb)
    assert (out - official["output"]).abs().max().item() <= 1e-4
    out.backward(official["grad_output"])
    for k in names:
        diff = (inputs[k].grad - official[f"grad_{k}"]).abs().max().item()
        assert diff <= 1e-4, f"grad of {k} differs by {diff}"


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize(
    "stride,padding,dilation,groups,deform_groups,kernel",
    [(1, 1, 1, 1, 2, 3), (2, 1, 1, 1, 1, 3), (1, 2, 2, 1, 4, 3), (1, 0, 1, 2, 2, 1), (1, 1, 1, 2, 1, 3)],
)
def test_against_loop_reference(impl, stride, padding, dilation, groups, deform_groups, kernel):
    """Stride, dilation, conv groups, deform groups, 1x1 kernels and far-out offsets (zero padding)."""
    gen = torch.Generator().manual_seed(stride * 7 + dilation * 3 + groups + deform_groups + kernel)
    n, c_in, c_out, h, w = 2, 8, 4, 7, 9
    h_out = (h + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1
    w_out = (w + 2 * padding - (dilation * (kernel - 1) + 1)) // stride + 1
    kk = kernel * kernel
    x = torch.randn(n, c_in, h, w, generator=gen)
    offset = torch.randn(n, deform_groups * kk * 2, h_out, w_out, generator=gen) * 4  # many points off-image
    mask = torch.rand(n, deform_groups * kk, h_out, w_out, generator=gen)
    weight = torch.randn(c_out, c_in // groups, kernel, kernel, generator=gen)
    bias = torch.randn(c_out, generator=gen)
    args = (stride, padding, dilation, groups, deform_groups)
    _assert_kernel_runs(impl, x, groups)
    with torch.no_grad():
        got = modulated_deform_conv2d(x, offset, mask, weight, bias, *args, impl=impl)
    ref = naive_dcn(x, offset, mask, weight, bias, *args)
    assert got.shape == (n, c_out, h_out, w_out)
    assert (got - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 5e-2), (torch.float16, 5e-3)])
def test_low_precision_close_to_float32(dtype, tol):
    """Half-precision inputs: coordinates stay float32; outputs track fp32 within the dtype's precision."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 16, 12, 20, generator=gen)
    offset = torch.randn(1, 4 * 9 * 2, 12, 20, generator=gen) * 3
    mask = torch.rand(1, 4 * 9, 12, 20, generator=gen)
    weight = torch.randn(8, 16, 3, 3, generator=gen) * 0.1
    bias = torch.randn(8, generator=gen)
    ref = modulated_deform_conv2d(x, offset, mask, weight, bias, 1, 1, 1, 1, 4, impl="pure")
    got = modulated_deform_conv2d(*(t.to(dtype) for t in (x, offset, mask, weight, bias)), 1, 1, 1, 1, 4)
    assert got.dtype == dtype
    rel = ((got.float() - ref).abs().max() / ref.abs().max()).item()
    assert rel <= tol


def test_chunk_budget_bounds_columns_at_1080p():
    """At the BasicVSR++ DCN shape on 1080p features, one chunk's columns stay under the budget."""
    budget = mdc._chunk_budget_bytes(None)
    assert budget == 512 << 20
    rows = mdc.pure_chunk_rows(n=1, c_in=128, k=9, deform_groups=16, h_out=1080, w_out=1920, itemsize=4)
    assert 1 <= rows < 1080
    assert rows * 1920 * 9 * 128 * 4 <= budget
    assert mdc.pure_chunk_rows(1, 128, 9, 16, 1080, 1920, 4, chunk_mb=64) < rows


def test_dispatch_rules(monkeypatch):
    x = torch.zeros(1, 4, 5, 5)
    # 'auto' on the CPU is plain PyTorch: the C kernel only when asked for (by the CPU backend)
    assert resolve_impl(None, x, needs_grad=False, groups=1) == "pure"
    expected_fused = "cpu_fused" if HAS_KERNEL else "pure"
    assert resolve_impl("cpu_fused", x, needs_grad=False, groups=1) == expected_fused
    assert resolve_impl("cpu_fused", x, needs_grad=True, groups=1) == "pure"  # training: autograd path
    assert resolve_impl("cpu_fused", x.double(), needs_grad=False, groups=1) == "pure"
    with pytest.raises(ValueError, match="unknown deformable-conv implementation"):
        resolve_impl("nonsense", x, needs_grad=False, groups=1)
    # an external op that does not import (mmcv-full is not installable here) is refused by name
    monkeypatch.setattr(mdc, "external_impl_works", lambda name, device: False)
    with pytest.raises(RuntimeError, match="'mmcv' does not import"):
        resolve_impl("mmcv", x, needs_grad=False, groups=1)


def test_module_parameters_and_shape_errors():
    layer = ModulatedDeformConv2d(8, 4, 3, padding=1, deform_groups=2)
    assert dict((k, tuple(v.shape)) for k, v in layer.state_dict().items()) == {
        "weight": (4, 8, 3, 3),
        "bias": (4,),
    }
    bound = 1 / math.sqrt(8 * 9)
    assert layer.weight.abs().max().item() <= bound and layer.bias.abs().max().item() == 0
    x = torch.randn(1, 8, 6, 6)
    out = layer(x, torch.zeros(1, 2 * 9 * 2, 6, 6), torch.ones(1, 2 * 9, 6, 6))
    # zero offsets and unit mask: a deformable conv is a plain conv
    ref = torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1)
    assert (out - ref).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="offset must be"):
        layer(x, torch.zeros(1, 9 * 2, 6, 6), torch.ones(1, 2 * 9, 6, 6))
    with pytest.raises(ValueError, match="mask must be"):
        layer(x, torch.zeros(1, 2 * 9 * 2, 6, 6), torch.ones(1, 9, 6, 6))
