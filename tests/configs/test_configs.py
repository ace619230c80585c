"""Every config loads with mmengine and builds its model; variants are deltas; one checkpoint name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import basicvsr_archival  # noqa: F401  (registers the models)
from basicvsr_archival.registry import MODELS

REPO = Path(__file__).resolve().parents[2]
PRICES = (
    REPO / "configs" / "archival" / "prices"
)  # price tables, not model configs (tests/archival/test_prices.py)
CONFIGS = sorted(
    p for p in (REPO / "configs").rglob("*.py") if "_base_" not in p.parts and PRICES not in p.parents
)
CHECKPOINT = re.compile(r"chkpts/[\w.-]+\.pth")


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO / "configs"))


@pytest.mark.parametrize("path", CONFIGS, ids=_rel)
def test_config_loads_and_builds_its_model(path: Path) -> None:
    cfg = Config.fromfile(str(path))
    cfg.model.pop("size_ladder", None)  # archival: read by load_archival_config, not a network argument
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    gen = cfg.model.generator
    assert sum(p.numel() for p in model.parameters()) > 0
    scale = gen.get("upscale_factor", 4)
    if "codec" in cfg:  # archival: the network's scale is the LR encode's
        assert scale == cfg.codec.scale
    if gen.mid_channels <= 8:  # tiny models also run
        with torch.no_grad():
            out = model(torch.rand(1, 3, 3, 16, 20), mode="tensor")
        assert out.shape == (1, 3, 3, 16 * scale, 20 * scale)


def test_every_config_is_found() -> None:
    assert len(CONFIGS) >= 13 and all(p.name != "_base_" for p in CONFIGS)


def test_training_variants_are_short_deltas_of_the_bases() -> None:
    for name in ("basicvsr_plusplus_reds4", "basicvsr_plusplus_vimeo90k_bi", "basicvsr_plusplus_vimeo90k_bd"):
        text = (REPO / "configs" / f"{name}.py").read_text()
        assert len(text.splitlines()) <= 20, name
        assert "./_base_/models/basicvsr_plusplus_c64n7.py" in text and "default_runtime.py" in text
    archival = (REPO / "configs" / "archival" / "_base_" / "archival_default.py").read_text()
    assert '"../../_base_/models/basicvsr_plusplus_c64n7.py"' in archival


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_vimeo_bd_differs_from_bi_in_the_lr_frames_only() -> None:
    bi, bd = (
        _flat(Config.fromfile(str(REPO / "configs" / f"basicvsr_plusplus_vimeo90k_{d}.py")).to_dict())
        for d in ("bi", "bd")
    )
    assert bi.keys() == bd.keys()
    diff = {k: (bi[k], bd[k]) for k in bi if bi[k] != bd[k]}
    assert diff == {
        "lq_folder": ("BIx4", "BDx4"),
        "val_lq_folder": ("BIx4", "BDx4"),
        "train_dataloader.dataset.lq_folder": ("BIx4", "BDx4"),
        "val_dataloader.dataset.lq_folder": ("BIx4", "BDx4"),
        "test_dataloader.dataset.lq_folder": ("BIx4", "BDx4"),
    }


def test_recipes_keep_the_official_numbers() -> None:
    reds = Config.fromfile(str(REPO / "configs" / "basicvsr_plusplus_reds4.py"))
    vimeo = Config.fromfile(str(REPO / "configs" / "basicvsr_plusplus_vimeo90k_bi.py"))
    assert (reds.train_cfg.max_iters, reds.param_scheduler.periods, reds.train_dataloader.batch_size) == (
        600_000, [600_000], 1,
    )  # fmt: skip
    assert (vimeo.train_cfg.max_iters, vimeo.param_scheduler.periods, vimeo.train_dataloader.batch_size) == (
        300_000, [300_000], 2,
    )  # fmt: skip
    assert reds.model.train_cfg.fix_iter == vimeo.model.train_cfg.fix_iter == 5000
    tiny = Config.fromfile(str(REPO / "configs" / "tiny_reds_demo_train.py"))
    assert "max_keep_ckpts" not in tiny.default_hooks.checkpoint  # every checkpoint is kept
    assert tiny.env_cfg.dist_cfg.backend == "gloo" and tiny.env_cfg.mp_cfg.mp_start_method == "fork"


def test_one_checkpoint_name_everywhere() -> None:
    documented = set(CHECKPOINT.findall((REPO / "chkpts" / "README.md").read_text()))
    assert documented == {"chkpts/basicvsr_plusplus_reds4.pth"}
    used = set(CHECKPOINT.findall((REPO / "README.md").read_text()))
    for path in (REPO / "configs").rglob("*.py"):
        used |= set(CHECKPOINT.findall(path.read_text()))
        cfg = Config.fromfile(str(path)) if "_base_" not in path.parts else None
        for key in ("load_from", "base_checkpoint"):
            if cfg is not None and cfg.get(key):
                assert cfg[key] in documented, (path, key)
    assert used == documented
    lectures = Config.fromfile(str(REPO / "configs" / "basicvsr_plusplus_lectures.py"))
    default = Config.fromfile(str(REPO / "configs" / "archival" / "x4_h264_crf23_finetune.py"))
    assert lectures.load_from == default.base_checkpoint == "chkpts/basicvsr_plusplus_reds4.pth"
