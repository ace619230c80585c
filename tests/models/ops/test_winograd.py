"""Winograd F(4x4, 3x3) / F(6x6, 3x3): F.conv2d numbers in both layouts, fused epilogues, buffers, cache."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from basicvsr_archival.models.ops import winograd
from basicvsr_archival.models.ops.cpu_kernel import cpu_variant, kernel_variant, load_winograd_kernel
from basicvsr_archival.models.ops.winograd import (
    DEFAULT_TILE,
    transform_weight,
    winograd_available,
    winograd_conv3x3,
)

# a missing kernel skips this module (and fails a CI run: tests/conftest.py); a kernel that loads must work
pytestmark = [
    pytest.mark.kernels,
    pytest.mark.skipif(load_winograd_kernel() is None, reason="winograd_cpu kernel missing"),
]


def test_kernel_loaded_passes_its_self_check():
    # the loaded kernel is the fixed variant of this CPU and is used (no silent fallback to oneDNN)
    assert winograd_available()
    assert kernel_variant() == cpu_variant() in ("x86-64-v3", "portable")


def _case(n, cin, cout, h, w, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=gen)
    weight = torch.randn(cout, cin, 3, 3, generator=gen) / (9 * cin) ** 0.5
    return x, weight, torch.randn(cout, generator=gen)


def _rel_err(got, ref):
    return ((got.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize(
    "n,cin,cout,h,w",
    [
        (1, 64, 64, 20, 32),  # BasicVSR++'s common layer, whole tiles
        (2, 3, 16, 7, 9),  # RGB input, partial tiles at the right and bottom
        (1, 196, 64, 13, 21),  # conv_offset's first layer: channels not a multiple of 8
        (1, 64, 432, 9, 50),  # conv_offset's last layer: several output-channel chunks (64 each)
        (1, 16, 24, 1, 1),  # a single pixel: only zero padding around it
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("tile", [4, 6])
def test_matches_direct_convolution(n, cin, cout, h, w, channels_last, tile):
    x, weight, bias = _case(n, cin, cout, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    got = winograd_conv3x3(x, weight, bias, tile=tile)
    ref = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    assert got.shape == (n, cout, h, w)
    if h * w > 1:  # a 1x1 image is both layouts at once
        assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
    # float32 through the transforms: measured 5e-6..1e-5 (F4) and 8e-6..2e-5 (F6) relative error
    assert _rel_err(got, ref) < 5e-5


def test_weight_layout_decides_the_output_layout_as_pytorch_does():
    x, weight, bias = _case(1, 16, 16, 8, 8)
    w_cl = weight.contiguous(memory_format=torch.channels_last)
    got = winograd_conv3x3(x, w_cl, bias)
    ref = F.conv2d(x, w_cl, bias, padding=1)
    assert got.is_contiguous(memory_format=torch.channels_last) and ref.is_contiguous(
        memory_format=torch.channels_last
    )
    assert (got - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("tile", [4, 6])
def test_fused_act_residual_shuffle(channels_last, tile):
    x, weight, bias = _case(2, 16, 64, 10, 13, seed=1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ref = F.pixel_shuffle(F.leaky_relu(F.conv2d(x, weight, bias, padding=1), 0.1), 2)  # (2, 16, 20, 26)
    res = torch.randn_like(ref)
    got = winograd_conv3x3(x, weight, bias, act="lrelu", slope=0.1, residual=res, shuffle=2, tile=tile)
    assert got.shape == (2, 16, 20, 26)
    assert (got - (ref + res)).abs().max().item() < 1e-4
    relu = winograd_conv3x3(x, weight, bias, act="relu", tile=tile)
    assert relu.min().item() == 0.0
    assert (relu - F.relu(F.conv2d(x, weight, bias, padding=1))).abs().max().item() < 1e-4


def test_out_buffer_is_written_and_checked():
    x, weight, bias = _case(1, 16, 32, 6, 6, seed=2)
    out = torch.full((1, 32, 6, 6), float("nan"))
    got = winograd_conv3x3(x, weight, None, out=out)
    assert got is out and not torch.isnan(out).any()
    assert (out - F.conv2d(x, weight, padding=1)).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="out"):
        winograd_conv3x3(x, weight, bias, out=torch.empty(1, 32, 6, 7))
    with pytest.raises(ValueError, match="pixel-shuffle"):
        winograd_conv3x3(x, weight, bias, shuffle=3)
    with pytest.raises(ValueError, match="tile"):
        winograd_conv3x3(x, weight, bias, tile=5)


def test_tile_setting(monkeypatch):
    from basicvsr_archival.models.backends import BackendSettings

    assert DEFAULT_TILE == BackendSettings().winograd_tile == 6
    monkeypatch.setenv("BASICVSR_WINOGRAD_TILE", "4")  # a documented override of the default
    assert BackendSettings.from_env().winograd_tile == 4
    monkeypatch.setenv("BASICVSR_WINOGRAD_TILE", "8")
    with pytest.raises(ValueError, match="winograd_tile=8"):
        BackendSettings.from_env()


def test_transformed_weight_is_cached_per_version():
    x, weight, bias = _case(1, 8, 16, 8, 8, seed=3)
    first = winograd_conv3x3(x, weight, bias)
    assert (id(weight), 1, DEFAULT_TILE) in winograd._cache
    with torch.no_grad():
        weight.mul_(2.0)  # in place: a new version, so the cached transform must not be used
    second = winograd_conv3x3(x, weight, bias)
    assert (second - bias.view(1, -1, 1, 1) - 2 * (first - bias.view(1, -1, 1, 1))).abs().max().item() < 1e-4
    key = (id(weight), 1, DEFAULT_TILE)
    del weight
    assert key not in winograd._cache  # dropped with its tensor


def test_transform_weight_shape_and_padding():
    assert transform_weight(torch.randn(20, 5, 3, 3), tile=6).shape == (64, 8, 32)
    u = transform_weight(torch.randn(20, 5, 3, 3))
    assert u.shape == (36, 8, 32)  # c_in padded to 8, c_out to 16
    assert u[:, 5:].abs().sum().item() == 0 and u[:, :, 20:].abs().sum().item() == 0
    # position (0, 0) of G g G^T is g[0, 0] / 16 (G's first row is (1/4, 0, 0))
    g = torch.arange(9.0).view(1, 1, 3, 3)
    assert transform_weight(g)[0, 0, 0].item() == pytest.approx(0.0)
    assert transform_weight(g + 1)[0, 0, 0].item() == pytest.approx(1 / 16)


def test_list_input_is_the_channel_concatenation():
    # several inputs (mixed layouts, one strided view) = the conv of their torch.cat, without the copy
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(2, 64, 9, 14, generator=gen).contiguous(memory_format=torch.channels_last)
    b = torch.randn(2, 3, 9, 14, generator=gen)
    c = torch.randn(2, 5, 9, 28, generator=gen)[..., ::2]  # neither layout: copied first
    weight = torch.randn(32, 72, 3, 3, generator=gen) / 24
    got = winograd_conv3x3([a, b, c], weight, None, act="relu")
    ref = F.relu(F.conv2d(torch.cat([a, b, c], 1), weight, padding=1))
    assert got.is_contiguous(memory_format=torch.channels_last)  # one channels-last input decides
    assert (got - ref).abs().max().item() < 1e-4
    with pytest.raises(ValueError, match="differ"):
        winograd_conv3x3([a, b[:, :, :8]], weight[:, :67], None)


def test_first_use_inside_inference_mode(tmp_path):
    # a fresh process whose first convolution runs in inference mode (as the demo and benchmarks do)
    code = (
        "import torch\n"
        "from basicvsr_archival.models.ops.fast_conv import Conv2d, fast_path\n"
        "with torch.inference_mode():\n"
        "    conv = Conv2d(8, 16, 3, 1, 1)  # inference-tensor parameters: no version counter\n"
        "    x = torch.randn(1, 8, 9, 10)\n"
        "    ref = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)\n"
        "    print(fast_path(conv, x, 'auto'), float((conv(x) - ref).abs().max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    path, err = out.stdout.split()
    assert path == "winograd" and float(err) < 1e-4


def test_inference_tensor_weights_are_not_cached():
    x, weight, bias = _case(1, 8, 16, 8, 8, seed=5)
    with torch.inference_mode():
        w_inf = weight.clone()
        got = winograd_conv3x3(x, w_inf, bias)
    assert (id(w_inf), 1, DEFAULT_TILE) not in winograd._cache
    assert (got - F.conv2d(x, weight, bias, padding=1)).abs().max().item() < 1e-4
