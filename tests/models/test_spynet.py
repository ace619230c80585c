"""SPyNet layout, pretrained loading and ``flow_warp`` semantics."""

import pytest
import torch

from basicvsr_archival.models import SPyNet, flow_warp


def test_parameter_names_and_buffers():
    keys = set(SPyNet().state_dict())
    assert {"mean", "std"} <= keys
    expected = {
        f"basic_module.{i}.basic_module.{j}.conv.{p}"
        for i in range(6)
        for j in range(5)
        for p in ("weight", "bias")
    }
    assert keys - {"mean", "std"} == expected


def test_flow_shape_any_size():
    spynet = SPyNet().eval()
    ref, supp = torch.rand(2, 3, 40, 72), torch.rand(2, 3, 40, 72)
    with torch.no_grad():
        flow = spynet(ref, supp)
    assert flow.shape == (2, 2, 40, 72)
    assert torch.isfinite(flow).all()


def test_pretrained_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        SPyNet(pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(TypeError):
        SPyNet(pretrained=123)


@pytest.mark.parametrize("layout", ["bare", "state_dict", "full_model"])
def test_pretrained_loading(tmp_path, layout):
    source = SPyNet()
    weights = {k: v for k, v in source.state_dict().items() if k not in ("mean", "std")}
    if layout == "state_dict":
        payload = {"meta": {"note": "official layout"}, "state_dict": weights}
    elif layout == "full_model":
        payload = {"state_dict": {f"generator.spynet.{k}": v for k, v in weights.items()}}
    else:
        payload = weights
    path = tmp_path / "spynet.pth"
    torch.save(payload, path)
    loaded = SPyNet(pretrained=str(path))
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_pretrained_mismatch_raises(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, path)
    with pytest.raises(RuntimeError):
        SPyNet(pretrained=str(path))


def test_flow_warp_zero_flow_is_identity():
    x = torch.rand(2, 4, 9, 11)
    torch.testing.assert_close(flow_warp(x, torch.zeros(2, 9, 11, 2)), x)


def test_flow_warp_integer_shift_and_zero_padding():
    x = torch.rand(1, 1, 6, 7)
    flow = torch.zeros(1, 6, 7, 2)
    flow[..., 0] = 2.0  # dx: sample two pixels to the right
    flow[..., 1] = -1.0  # dy: sample one pixel above
    out = flow_warp(x, flow)
    expected = torch.zeros_like(x)
    expected[..., 1:, :-2] = x[..., :-1, 2:]
    torch.testing.assert_close(out, expected)
    border = flow_warp(x, flow, padding_mode="border")
    assert torch.equal(border[..., 0, 0], x[..., 0, 2])


def test_flow_warp_size_mismatch():
    with pytest.raises(ValueError):
        flow_warp(torch.rand(1, 1, 4, 4), torch.zeros(1, 5, 4, 2))


@pytest.mark.kernels
@pytest.mark.parametrize("h,w,c", [(23, 37, 64), (1, 1, 3), (5, 4, 8)])
def test_flow_warp_cpu_kernel_matches_grid_sample(h, w, c):
    # the CPU backend's warp: channels-last float32 inference takes the C kernel; the plain
    # network's grid_sample gives the same numbers
    from basicvsr_archival.models.backends.cpu_kernels import fast_flow_warp
    from basicvsr_archival.models.ops.cpu_kernel import load_cpu_kernel

    assert load_cpu_kernel() is not None  # the C kernel runs here, not a silent grid_sample fallback

    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, c, h, w, generator=gen)
    flow = (torch.randn(2, 2, h, w, generator=gen) * 3).permute(0, 2, 3, 1)  # (n, h, w, 2), strided
    flow[0, 0, 0] = torch.tensor([-1e9, 5.0])  # far outside: zeros
    flow[1, 0, 0] = torch.tensor([float("nan"), 0.0])  # NaN position: NaN, as grid_sample
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got, ref = fast_flow_warp(x_cl, flow), flow_warp(x, flow)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(torch.isnan(got), torch.isnan(ref)) and torch.isnan(got[1, :, 0, 0]).all()
    assert torch.nan_to_num(got - ref).abs().max().item() < 1e-5
    if w > 1:  # (a 1-pixel-wide image maps every position onto its one column, as grid_sample does)
        assert got[0, :, 0, 0].abs().max().item() == 0.0
