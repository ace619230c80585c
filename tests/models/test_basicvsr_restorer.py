"""The ``BasicVSR`` restorer: config build, official checkpoint layout, modes and the SPyNet fix schedule."""

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmengine.runner import load_checkpoint

from basicvsr_archival.models import BasicVSR, BasicVSRPlusPlus, CharbonnierLoss
from basicvsr_archival.registry import MODELS


def _config(generator: dict, **kwargs) -> dict:
    return dict(
        type="BasicVSR",
        generator=dict(type="BasicVSRPlusPlus", **generator),
        pixel_loss=dict(type="CharbonnierLoss", loss_weight=1.0, reduction="mean"),
        **kwargs,
    )


def _tiny(**kwargs) -> BasicVSR:
    return MODELS.build(_config(dict(mid_channels=8, num_blocks=1, is_low_res_input=True), **kwargs))


def _batch(n: int = 1, t: int = 2, h: int = 64, w: int = 64, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(n, t, 3, h, w, generator=generator)
    gt = torch.rand(n, t, 3, 4 * h, 4 * w, generator=generator)
    return dict(inputs=inputs, data_samples=dict(gt=gt, key=[f"clip{i}" for i in range(n)]))


def test_build_from_official_style_config():
    model = MODELS.build(
        _config(
            dict(mid_channels=8, num_blocks=1, is_low_res_input=True, spynet_pretrained=None),
            train_cfg=dict(fix_iter=5000),
            test_cfg=dict(metrics=["PSNR"], crop_border=0),
            data_preprocessor=None,
        )
    )
    assert isinstance(model, BasicVSR)
    assert isinstance(model.generator, BasicVSRPlusPlus)
    assert isinstance(model.pixel_loss, CharbonnierLoss)
    assert model.fix_iter == 5000
    assert all(k.startswith("generator.") for k in model.state_dict())
    assert MODELS.build(_config(dict(mid_channels=8, num_blocks=1))).fix_iter == 0


def test_official_checkpoint_loads_strictly(tmp_path, shared_dir):
    case = torch.load(shared_dir / "reference" / "basicvsrpp_official_io.pt")["x4"]
    checkpoint = {
        "meta": {"mmedit_version": "0.16.1", "note": "official layout"},
        "state_dict": {f"generator.{k}": v for k, v in case["state_dict"].items()},
    }
    path = tmp_path / "basicvsrpp.pth"
    torch.save(checkpoint, path)
    model = MODELS.build(_config(case["config"])).eval()
    load_checkpoint(model, str(path), map_location="cpu", strict=True)
    for k, v in case["state_dict"].items():
        assert torch.equal(model.state_dict()[f"generator.{k}"], v), k
    with torch.no_grad():
        out = model(case["input"][:, :2], mode="tensor")
    assert out.shape == (1, 2, 3, 256, 384)


def test_modes():
    model = _tiny()
    batch = _batch(n=2)
    losses = model(**batch, mode="loss")
    assert set(losses) == {"loss_pix"}
    assert losses["loss_pix"].dim() == 0 and torch.isfinite(losses["loss_pix"])

    preds = model(**batch, mode="predict")
    assert len(preds) == 2
    for i, sample in enumerate(preds):
        assert set(sample) == {"pred", "gt", "key"}
        assert sample["pred"].shape == (2, 3, 256, 256) and sample["pred"].device.type == "cpu"
        assert sample["pred"].min() >= 0 and sample["pred"].max() <= 1
        assert torch.equal(sample["gt"], batch["data_samples"]["gt"][i])
        assert sample["key"] == f"clip{i}"

    preds = model.test_step(dict(inputs=batch["inputs"], data_samples=dict(key=["a", "b"])))
    assert [set(p) for p in preds] == [{"pred", "key"}] * 2
    assert model(batch["inputs"]).shape == (2, 2, 3, 256, 256)
    with pytest.raises(ValueError):
        model(batch["inputs"], mode="bogus")


def _snapshot(model: BasicVSR) -> tuple[dict, dict]:
    spynet, others = {}, {}
    for name, p in model.generator.named_parameters():
        (spynet if "spynet" in name else others)[name] = p.detach().clone()
    return spynet, others


def _changed(before: dict, model: BasicVSR) -> bool:
    params = dict(model.generator.named_parameters())
    return any(not torch.equal(params[k], v) for k, v in before.items())


def test_train_step_fix_iter_schedule():
    torch.manual_seed(0)
    model = _tiny(train_cfg=dict(fix_iter=2))
    optim_wrapper = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3))
    message_hub = MessageHub.get_current_instance()
    try:
        message_hub.update_info("iter", 0)
        spynet_before, others_before = _snapshot(model)
        log_vars = model.train_step(_batch(), optim_wrapper)
        assert "loss" in log_vars and "loss_pix" in log_vars
        assert all(not p.requires_grad for p in model.generator.spynet.parameters())
        assert not _changed(spynet_before, model)
        assert _changed(others_before, model)

        message_hub.update_info("iter", 5)
        spynet_before, others_before = _snapshot(model)
        model.train_step(_batch(seed=1), optim_wrapper)
        assert all(p.requires_grad for p in model.generator.parameters())
        assert _changed(spynet_before, model)
        assert _changed(others_before, model)
    finally:
        message_hub.update_info("iter", 0)


def test_loss_mode_applies_schedule_for_ddp_wrappers():
    # MMDistributedDataParallel.train_step calls forward(mode='loss') directly, not our train_step
    model = _tiny(train_cfg=dict(fix_iter=2)).train()
    message_hub = MessageHub.get_current_instance()
    try:
        message_hub.update_info("iter", 1)
        model(**_batch(), mode="loss")
        assert all(not p.requires_grad for p in model.generator.spynet.parameters())
        message_hub.update_info("iter", 2)
        model(**_batch(), mode="loss")
        assert all(p.requires_grad for p in model.generator.parameters())
    finally:
        message_hub.update_info("iter", 0)
