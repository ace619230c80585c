"""BasicVSR++: official parameter layout, numerical parity with the official outputs, shapes and modes."""

import json

import pytest
import torch

from basicvsr_archival.models import BasicVSRPlusPlus
from basicvsr_archival.registry import MODELS

TINY = dict(mid_channels=8, num_blocks=1)


@pytest.fixture(scope="module")
def official_io(shared_dir):
    """The official BasicVSR++ input/output cases ``x4`` and ``same_size``."""
    return torch.load(shared_dir / "reference" / "basicvsrpp_official_io.pt")


def _rand_lqs(n: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, t, 3, h, w, generator=generator)


def test_state_dict_matches_official_c64n7(shared_dir):
    reference = json.loads((shared_dir / "reference" / "basicvsrpp_c64n7_state_dict_keys.json").read_text())
    model = BasicVSRPlusPlus(mid_channels=64, num_blocks=7)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == reference["keys"]
    assert sum(p.numel() for p in model.parameters()) == reference["num_params"]


@pytest.mark.parametrize("backend", ["torch", "cpu_kernels"])
@pytest.mark.parametrize("case", ["x4", "same_size"])
def test_parity_with_official(official_io, case, backend):
    from basicvsr_archival.models.backends import apply_backend, backend_record

    data = official_io[case]
    model = BasicVSRPlusPlus(**data["config"]).eval()
    model.load_state_dict(data["state_dict"], strict=True)
    apply_backend(model, backend)
    assert backend_record(model)["backend"] == backend
    with torch.no_grad():
        output = model(data["input"].float())
    assert output.shape == data["output"].shape
    max_diff = (output - data["output"]).abs().max().item()
    print(f"{case}: max |diff| = {max_diff:.3e}")
    assert max_diff <= 1e-4


def test_registry_build_and_x4_shape():
    model = MODELS.build(dict(type="BasicVSRPlusPlus", **TINY))
    assert isinstance(model, BasicVSRPlusPlus)
    with torch.no_grad():
        out = model(_rand_lqs(1, 2, 64, 64))
    assert out.shape == (1, 2, 3, 256, 256)


def test_small_frames_are_padded_and_cropped():
    model = BasicVSRPlusPlus(**TINY).eval()
    lqs = _rand_lqs(1, 2, 40, 48)
    with torch.no_grad():
        out = model(lqs)
    assert out.shape == (1, 2, 3, 160, 192)
    assert torch.isfinite(out).all()


def test_x2_variant():
    model = BasicVSRPlusPlus(upscale_factor=2, **TINY).eval()
    assert not hasattr(model, "upsample2")
    assert not any(k.startswith("upsample2.") for k in model.state_dict())
    with torch.no_grad():
        out = model(_rand_lqs(1, 2, 64, 72))
    assert out.shape == (1, 2, 3, 128, 144)


def test_same_size_mode_small_input():
    model = BasicVSRPlusPlus(is_low_res_input=False, **TINY).eval()
    with torch.no_grad():
        out = model(_rand_lqs(1, 2, 62, 70))
    assert out.shape == (1, 2, 3, 62, 70)


def test_invalid_upscale_factor():
    with pytest.raises(ValueError):
        BasicVSRPlusPlus(upscale_factor=3, **TINY)
    with pytest.raises(ValueError):
        BasicVSRPlusPlus(upscale_factor=2, is_low_res_input=False, **TINY)


def test_single_frame():
    model = BasicVSRPlusPlus(**TINY).eval()
    with torch.no_grad():
        out = model(_rand_lqs(1, 1, 64, 64))
    assert out.shape == (1, 1, 3, 256, 256)


def test_mirror_extended_skips_forward_flow_with_same_result(monkeypatch):
    model = BasicVSRPlusPlus(**TINY).eval()
    half = _rand_lqs(1, 2, 64, 64)
    lqs = torch.cat([half, half.flip(1)], dim=1)  # (1, 4, 3, 64, 64), mirror-extended
    assert model.check_if_mirror_extended(lqs)
    assert not model.check_if_mirror_extended(_rand_lqs(1, 4, 64, 64))

    calls = []
    original = model.spynet.forward
    monkeypatch.setattr(model.spynet, "forward", lambda *a: calls.append(1) or original(*a))
    with torch.no_grad():
        out_mirror = model(lqs)
    assert len(calls) == 1  # only the backward flows
    monkeypatch.setattr(model, "check_if_mirror_extended", lambda _lqs: False)
    with torch.no_grad():
        out_full = model(lqs)
    assert len(calls) == 3
    torch.testing.assert_close(out_mirror, out_full, atol=1e-5, rtol=0)


def test_forward_writes_no_state_and_backward_works():
    model = BasicVSRPlusPlus(**TINY)
    before = {name: set(vars(m)) for name, m in model.named_modules()}
    out = model(_rand_lqs(1, 2, 64, 64))
    out.mean().backward()
    after = {name: set(vars(m)) for name, m in model.named_modules()}
    assert before == after
    assert model.deform_align["backward_1"].conv_offset[0].weight.grad is not None
    assert model.spynet.basic_module[0].basic_module[0].conv.weight.grad is not None


def test_last_offset_layer_is_zero_initialised():
    model = BasicVSRPlusPlus(**TINY)
    for module in model.deform_align.values():
        assert torch.count_nonzero(module.conv_offset[-1].weight) == 0
        assert torch.count_nonzero(module.conv_offset[-1].bias) == 0


def test_cpu_cache_path_gives_same_result():
    # the cache path only moves tensors (and extracts features frame by frame): same output on the CPU
    model = BasicVSRPlusPlus(**TINY).eval()
    lqs = _rand_lqs(1, 3, 64, 64)
    with torch.no_grad():
        cached = model._forward_padded(lqs, cpu_cache=True)
        plain = model._forward_padded(lqs, cpu_cache=False)
    torch.testing.assert_close(cached, plain, atol=1e-6, rtol=0)


@pytest.mark.kernels
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_flow_guided_alignment_matches_pure_path(channels_last):
    # the CPU kernel computes offsets/masks from the raw conv_offset output itself: same numbers as the
    # reference equations (tanh residue + flow, sigmoid mask) run through the pure-PyTorch DCN
    import copy

    from basicvsr_archival.models.backends import BackendSettings, apply_backend
    from basicvsr_archival.models.basicvsr_plusplus import SecondOrderDeformableAlignment
    from basicvsr_archival.models.ops.cpu_kernel import load_cpu_kernel

    if load_cpu_kernel() is None:
        pytest.skip("dcn_cpu kernel missing")  # marked `kernels`: fails a CI run (tests/conftest.py)
    torch.manual_seed(0)
    plain = SecondOrderDeformableAlignment(32, 16, 3, padding=1, deform_groups=16, max_residue_magnitude=10)
    plain = plain.eval()
    torch.nn.init.normal_(plain.conv_offset[-1].weight, std=0.05)
    layer = apply_backend(copy.deepcopy(plain), "cpu_kernels", BackendSettings(conv_impl="native"))
    gen = torch.Generator().manual_seed(3)
    x, extra = torch.randn(1, 32, 23, 31, generator=gen), torch.randn(1, 48, 23, 31, generator=gen)
    flow_1, flow_2 = (3 * torch.randn(1, 2, 23, 31, generator=gen) for _ in range(2))
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x, extra = (t.contiguous(memory_format=torch.channels_last) for t in (x, extra))
    with torch.no_grad():
        raw = plain.conv_offset(torch.cat([extra, flow_1, flow_2], 1))
        assert layer.fused_kernel_applies(x, raw, flow_1, flow_2)
        fused = layer(x, extra, flow_1, flow_2)
        pure = plain(x, extra, flow_1, flow_2)  # the plain network: pure-PyTorch DCN
    assert fused.shape == pure.shape == (1, 16, 23, 31)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert fused.is_contiguous(memory_format=fmt)
    assert (fused - pure).abs().max().item() < 1e-4
    assert pure.abs().max().item() > 0.1  # non-trivial output


def test_bf16_autocast_on_cpu_runs_and_stays_close_to_fp32():
    # under autocast the offsets/masks come out of conv_offset in bf16 while the first aligned
    # features are float32 zeros: the fused float32 kernel must not be handed bf16 buffers
    torch.manual_seed(0)
    model = BasicVSRPlusPlus(**TINY).eval()
    for align in model.deform_align.values():
        torch.nn.init.normal_(align.conv_offset[-1].weight, std=0.02)
    lqs = _rand_lqs(1, 3, 64, 64, seed=5)
    with torch.inference_mode():
        ref = model(lqs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(lqs)
    assert out.shape == ref.shape == (1, 3, 3, 256, 256)
    assert torch.isfinite(out.float()).all()
    mse = (out.float().clamp(0, 1) - ref.clamp(0, 1)).pow(2).mean().item()
    assert 10 * torch.log10(torch.tensor(1.0 / mse)).item() > 30


@pytest.mark.parametrize("backend", ["torch", "cpu_kernels"])
def test_flow_estimator_none_equals_a_zero_flow_spynet_without_its_cost(backend, monkeypatch):
    from basicvsr_archival.models.backends import apply_backend
    from basicvsr_archival.models.spynet import SPyNet

    torch.manual_seed(0)
    with_spynet = BasicVSRPlusPlus(**TINY, upscale_factor=2).eval()
    for level in with_spynet.spynet.basic_module:  # the last conv of every level predicts zero flow
        torch.nn.init.zeros_(level.basic_module[-1].conv.weight)
        torch.nn.init.zeros_(level.basic_module[-1].conv.bias)
    with torch.no_grad():  # an offset residue, so the learned offsets take part
        torch.nn.init.normal_(with_spynet.deform_align["forward_1"].conv_offset[-1].weight, std=0.1)
    no_flow = BasicVSRPlusPlus(**TINY, upscale_factor=2, flow_estimator="none").eval()
    state = {k: v for k, v in with_spynet.state_dict().items() if not k.startswith("spynet.")}
    assert set(no_flow.state_dict()) == set(state)  # no spynet module, no new tensors
    no_flow.load_state_dict(state, strict=True)
    for m in (with_spynet, no_flow):
        apply_backend(m, backend)
    lqs = _rand_lqs(1, 5, 40, 48)
    calls = []
    monkeypatch.setattr(SPyNet, "compute_flow", lambda self, *a: calls.append(1) or 1 / 0)
    with torch.no_grad():
        out = no_flow(lqs)
    assert calls == []  # SPyNet never runs
    monkeypatch.undo()
    with torch.no_grad():
        ref = with_spynet(lqs)
    assert out.shape == (1, 5, 3, 80, 96)
    assert torch.equal(out, ref)


def test_flow_estimator_is_checked():
    with pytest.raises(ValueError, match="flow_estimator must be one of"):
        BasicVSRPlusPlus(**TINY, flow_estimator="raft")
    with pytest.raises(ValueError, match="spynet_pretrained needs flow_estimator='spynet'"):
        BasicVSRPlusPlus(**TINY, flow_estimator="none", spynet_pretrained="x.pth")
