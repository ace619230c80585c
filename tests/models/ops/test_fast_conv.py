"""``Conv2d`` with Winograd/NNPACK/GEMM dispatch: same numbers as ``F.conv2d``, same state dict, fallbacks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from basicvsr_archival.models.backends import BackendSettings
from basicvsr_archival.models.ops import fast_conv
from basicvsr_archival.models.ops.fast_conv import (
    Conv2d,
    nnpack_applies,
    nnpack_works,
    run_sequential,
)
from basicvsr_archival.models.ops.winograd import winograd_available

needs_nnpack = pytest.mark.skipif(not nnpack_works(), reason="NNPACK unavailable in this torch build")


def _conv(cin: int, cout: int, k: int, seed: int = 0) -> Conv2d:
    torch.manual_seed(seed)
    return Conv2d(cin, cout, k, 1, k // 2).eval()


def test_state_dict_is_that_of_nn_conv2d():
    conv = _conv(4, 16, 3)
    ref = nn.Conv2d(4, 16, 3, 1, 1)
    assert conv.state_dict().keys() == ref.state_dict().keys()
    ref.load_state_dict(conv.state_dict(), strict=True)


@needs_nnpack
@pytest.mark.parametrize("cin,cout,k,n", [(8, 32, 3, 1), (16, 16, 3, 2), (8, 16, 7, 1), (16, 2, 7, 3)])
def test_nnpack_matches_direct_convolution(monkeypatch, cin, cout, k, n):
    conv = _conv(cin, cout, k)
    x = torch.randn(n, cin, 37, 53, generator=torch.Generator().manual_seed(1))
    conv.configure("nnpack", 6)
    with torch.no_grad():
        assert nnpack_applies(conv, x, conv.conv_impl)
        got = conv(x)
        ref = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=k // 2)
    assert got.shape == (n, cout, 37, 53)
    rel = ((got.double() - ref).abs().max() / ref.abs().max()).item()
    # Winograd F(6x6, 3x3) loses a little precision, FFT for 7x7 almost none
    assert rel < (1e-4 if k == 3 else 1e-5)


@needs_nnpack
def test_auto_choices():
    x = torch.randn(1, 64, 16, 16)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    wino = "winograd" if winograd_available() else "nnpack"
    with torch.no_grad():
        assert fast_conv.fast_path(_conv(64, 64, 3), x, "auto") == wino  # 'same' 3x3, >= 16 outputs
        assert fast_conv.fast_path(_conv(64, 64, 3), x_cl, "auto") == (wino if wino == "winograd" else None)
        assert fast_conv.fast_path(_conv(64, 3, 3), x, "auto") == "gemm"  # few outputs: GEMM + shifts
        assert fast_conv.fast_path(_conv(64, 16, 7), x, "auto") == "nnpack"  # SPyNet's 7x7: FFT
        assert fast_conv.fast_path(_conv(64, 16, 7), x_cl, "auto") is None  # NNPACK takes NCHW only
        assert fast_conv.fast_path(_conv(64, 64, 3), x, "nnpack") == "nnpack"
        assert fast_conv.fast_path(_conv(64, 16, 7), x, "winograd") is None
        assert fast_conv.fast_path(_conv(64, 64, 3), x.double(), "auto") is None
        assert fast_conv.fast_path(Conv2d(64, 64, 3, 2, 1), x, "auto") is None  # strided
        assert fast_conv.fast_path(_conv(64, 64, 3), x, "native") is None
    # training: autograd needs the native op
    assert fast_conv.fast_path(_conv(64, 64, 3), x.requires_grad_(), "auto") is None


def test_training_gradients_flow_through_native_path():
    conv = _conv(8, 16, 3).train()
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    conv(x).square().mean().backward()
    assert x.grad is not None and conv.weight.grad is not None
    assert conv.weight.grad.abs().sum().item() > 0


def test_bad_values_name_the_setting(monkeypatch):
    with pytest.raises(ValueError, match="conv_impl='winograd9000'"):
        _conv(8, 8, 3).configure("winograd9000", 6)
    with pytest.raises(ValueError, match="winograd_tile=8"):
        _conv(8, 8, 3).configure("auto", 8)
    # the environment variable is a documented override of the settings' default, named when bad
    monkeypatch.setenv("BASICVSR_CONV_IMPL", "winograd9000")
    with pytest.raises(ValueError, match=r"BASICVSR_.*conv_impl='winograd9000'"):
        BackendSettings.from_env()
    monkeypatch.setenv("BASICVSR_CONV_IMPL", "native")
    assert BackendSettings.from_env().conv_impl == "native"


@needs_nnpack
@pytest.mark.parametrize("k", [3, 7])
def test_strips_give_the_same_result(monkeypatch, k):
    # a large layer runs in strips of rows with a halo: same numbers as one call
    monkeypatch.setattr(fast_conv, "_STRIP_MIN_PIXELS", 1000)
    monkeypatch.setattr(fast_conv, "_STRIP_PIXELS", 7 * 90)  # 7-row strips: many interior borders
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 8, 45, 90, generator=gen)
    w, b = torch.randn(16, 8, k, k, generator=gen) / (8 * k * k) ** 0.5, torch.randn(16, generator=gen)
    with torch.no_grad():
        got = fast_conv._nnpack_conv(x, w, b, (k // 2, k // 2))
        ref = F.conv2d(x, w, b, padding=k // 2)
    assert got.shape == ref.shape == (2, 16, 45, 90)
    assert (got - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("cout,n", [(3, 1), (5, 2)])
def test_gemm_shift_path_matches_direct_convolution(cout, n):
    conv = _conv(16, cout, 3)
    x = torch.randn(n, 16, 29, 41, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert fast_conv.fast_path(conv, x, "auto") == "gemm"
        got = conv(x)
        ref = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
    assert got.shape == (n, cout, 29, 41)
    assert (got.double() - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("act", [None, "relu", "lrelu"])
@pytest.mark.parametrize("shuffle", [1, 2])
@pytest.mark.parametrize("impl", ["native", "auto"])
def test_forward_fused_equals_the_unfused_modules(act, shuffle, impl):
    # fused call (Winograd under 'auto', separate ops under 'native') = conv, act, shuffle, + residual
    conv = _conv(16, 32, 3).configure(impl, 6)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 16, 11, 14, generator=gen)
    res = torch.randn(2, 32 // shuffle**2, 11 * shuffle, 14 * shuffle, generator=gen)
    with torch.no_grad():
        got = conv.forward_fused(x, act, 0.2, residual=res, shuffle=shuffle)
        ref = F.conv2d(x, conv.weight, conv.bias, padding=1)
        ref = {None: ref, "relu": F.relu(ref), "lrelu": F.leaky_relu(ref, 0.2)}[act]
        ref = F.pixel_shuffle(ref, shuffle) + res
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() < 1e-4


def test_forward_fused_keeps_gradients():
    conv = _conv(8, 16, 3).train()
    x = torch.randn(1, 8, 9, 9, requires_grad=True)
    res = torch.randn(1, 16, 9, 9, requires_grad=True)
    conv.forward_fused(x, "relu", residual=res).square().mean().backward()
    assert x.grad.abs().sum().item() > 0 and res.grad.abs().sum().item() > 0 and conv.weight.grad is not None


def test_run_sequential_equals_the_sequential():
    torch.manual_seed(6)
    seq = nn.Sequential(
        Conv2d(8, 16, 3, 1, 1), nn.LeakyReLU(0.1), Conv2d(16, 16, 3, 1, 1), nn.ReLU(), Conv2d(16, 24, 3, 1, 1)
    ).eval()
    x = torch.randn(1, 8, 13, 10)
    with torch.no_grad():
        assert (run_sequential(seq, x) - seq(x)).abs().max().item() < 1e-4


@pytest.mark.parametrize("impl", ["native", "auto"])
def test_sequential_and_fused_take_a_list_of_inputs(impl):
    torch.manual_seed(8)
    seq = nn.Sequential(Conv2d(12, 16, 3, 1, 1), nn.LeakyReLU(0.1), Conv2d(16, 16, 3, 1, 1)).eval()
    seq[0].configure(impl, 6), seq[2].configure(impl, 6)
    parts = [torch.randn(1, 4, 10, 11), torch.randn(1, 8, 10, 11)]
    with torch.no_grad():
        ref = seq(torch.cat(parts, 1))
        assert (run_sequential(seq, parts) - ref).abs().max().item() < 1e-4
        fused = seq[0].forward_fused(parts, "lrelu", 0.1)
        assert (fused - F.leaky_relu(seq[0](torch.cat(parts, 1)), 0.1)).abs().max().item() < 1e-4
