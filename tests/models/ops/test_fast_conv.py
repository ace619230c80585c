"""``Conv2d`` with NNPACK dispatch: same numbers as ``F.conv2d``, same state dict, fallbacks."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from basicvsr_archival.models.ops import fast_conv
from basicvsr_archival.models.ops.fast_conv import Conv2d, conv_impl, nnpack_applies, nnpack_works

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
    monkeypatch.setenv("BASICVSR_CONV_IMPL", "nnpack")
    with torch.no_grad():
        assert nnpack_applies(conv, x, conv_impl())
        got = conv(x)
        ref = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=k // 2)
    assert got.shape == (n, cout, 37, 53)
    rel = ((got.double() - ref).abs().max() / ref.abs().max()).item()
    # Winograd F(6x6, 3x3) loses a little precision, FFT for 7x7 almost none
    assert rel < (1e-4 if k == 3 else 1e-5)


@needs_nnpack
def test_auto_choices(monkeypatch):
    monkeypatch.setenv("BASICVSR_CONV_IMPL", "auto")
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        assert nnpack_applies(_conv(64, 64, 3), x, "auto")
        assert fast_conv.fast_path(_conv(64, 3, 3), x, "auto") == "gemm"  # few outputs: GEMM + shifts
        assert not nnpack_applies(_conv(64, 64, 3), x.contiguous(memory_format=torch.channels_last), "auto")
        assert not nnpack_applies(_conv(64, 64, 3), x.double(), "auto")
        assert not nnpack_applies(Conv2d(64, 64, 3, 2, 1), x, "auto")  # strided
        assert not nnpack_applies(_conv(64, 64, 3), x, "native")
    # training: autograd needs the native op
    assert not nnpack_applies(_conv(64, 64, 3), x.requires_grad_(), "auto")


def test_training_gradients_flow_through_native_path():
    conv = _conv(8, 16, 3).train()
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    conv(x).square().mean().backward()
    assert x.grad is not None and conv.weight.grad is not None
    assert conv.weight.grad.abs().sum().item() > 0


def test_bad_env_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("BASICVSR_CONV_IMPL", "winograd9000")
    with pytest.raises(ValueError, match="BASICVSR_CONV_IMPL"):
        fast_conv.conv_impl()


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
def test_gemm_shift_path_matches_direct_convolution(monkeypatch, cout, n):
    monkeypatch.setenv("BASICVSR_CONV_IMPL", "auto")
    conv = _conv(16, cout, 3)
    x = torch.randn(n, 16, 29, 41, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert fast_conv.fast_path(conv, x, "auto") == "gemm"
        got = conv(x)
        ref = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
    assert got.shape == (n, cout, 29, 41)
    assert (got.double() - ref).abs().max().item() < 1e-5
