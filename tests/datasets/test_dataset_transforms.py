"""Pipeline transforms: frame selection, loading, degradation, paired crops, flips and packing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate

from basicvsr_archival.datasets import (
    Degrade,
    Flip,
    GenerateSegmentIndices,
    LoadImageFromFile,
    MirrorSequence,
    PackInputs,
    PairedRandomCrop,
    RandomTransposeHW,
    pad_indices,
)
from basicvsr_archival.datasets.io import read_image, read_image_uint8
from basicvsr_archival.utils.imresize import imresize


def _results(length: int = 10, **extra) -> dict:
    paths = [f"f{i}.png" for i in range(length)]
    return dict(key="clip", lq_path=list(paths), gt_path=list(paths), sequence_length=length, **extra)


def test_segment_indices_official_rule():
    np.random.seed(0)
    starts = set()
    for _ in range(200):
        out = GenerateSegmentIndices(interval_list=[1], num_input_frames=3)(_results(10))
        idx = out["frame_indices"]
        assert idx == list(range(idx[0], idx[0] + 3)) and out["lq_path"] == [f"f{i}.png" for i in idx]
        starts.add(idx[0])
    assert starts == set(range(8))  # start uniform in [0, L - n * interval]
    out = GenerateSegmentIndices(interval_list=[2], num_input_frames=3)(_results(10))
    assert np.diff(out["frame_indices"]).tolist() == [2, 2] and out["frame_indices"][0] <= 4


def test_segment_indices_whole_clip_offset_and_errors():
    out = GenerateSegmentIndices(random_start=False)(_results(5, frame_offset=100))
    assert out["frame_indices"] == [100, 101, 102, 103, 104]
    assert out["gt_path"] == [f"f{i}.png" for i in range(5)]
    with pytest.raises(ValueError, match="'clip' has 4 frames"):
        GenerateSegmentIndices(num_input_frames=5)(_results(4))
    out = GenerateSegmentIndices(num_input_frames=6, pad_mode="reflection")(_results(4))
    assert out["frame_indices"] == [0, 1, 2, 3, 2, 1]
    with pytest.raises(ValueError, match="pad_mode"):
        GenerateSegmentIndices(pad_mode="wrap")


def test_pad_indices_modes():
    idx = [-2, -1, 0, 3, 4, 5]
    assert pad_indices(idx, 4, "replicate") == [0, 0, 0, 3, 3, 3]
    assert pad_indices(idx, 4, "reflection") == [2, 1, 0, 3, 2, 1]
    assert pad_indices(idx, 4, "circle") == [2, 3, 0, 3, 0, 1]


def test_load_and_degrade_real_frames(reds_demo_dir: Path):
    paths = [str(reds_demo_dir / f"{i:08d}.png") for i in (4, 5)]
    res = LoadImageFromFile("gt")(dict(key="demo", gt_path=paths))
    gt = res["gt"]
    assert len(gt) == 2 and gt[0].shape == (180, 320, 3) and gt[0].dtype == np.float32
    np.testing.assert_array_equal(np.round(gt[1] * 255).astype(np.uint8), read_image_uint8(paths[1]))
    res = Degrade(scale=4)(res)
    assert res["lq"][0].shape == (45, 80, 3)
    ref = imresize(read_image_uint8(paths[0]), 0.25).astype(np.float32) / 255.0
    assert np.abs(res["lq"][0] - ref).max() <= 1 / 255 + 1e-6
    assert np.allclose(res["lq"][0] * 255, np.round(res["lq"][0] * 255), atol=1e-3)  # 8-bit levels
    bd = Degrade(scale=4, degradation="BD")(dict(key="demo", gt=[gt[0][:179]]))
    assert bd["gt"][0].shape == (176, 320, 3) and bd["lq"][0].shape == (44, 80, 3)  # mod-crop first


def test_load_missing_file_and_allow_missing(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        LoadImageFromFile("gt")(dict(key="c", gt_path=[str(tmp_path / "nope.png")]))
    res = LoadImageFromFile("lq", allow_missing=True)(dict(key="c", lq_path=None))
    assert "lq" not in res
    with pytest.raises(KeyError, match="lq_path"):
        LoadImageFromFile("lq")(dict(key="c", lq_path=None))
    kept = Degrade(keep_existing=True)(dict(key="c", lq=["x"], gt=[np.zeros((8, 8, 3))]))
    assert kept["lq"] == ["x"]


def _pair(t: int = 3, h: int = 12, w: int = 16) -> dict:
    rng = np.random.default_rng(1)
    gt = [rng.random((h * 4, w * 4, 3), dtype=np.float32) for _ in range(t)]
    return dict(key="k", gt=gt, lq=[g[::4, ::4].copy() for g in gt])


def test_paired_random_crop_alignment():
    np.random.seed(3)
    res = PairedRandomCrop(gt_patch_size=32, scale=4)(_pair())
    assert res["gt"][0].shape == (32, 32, 3) and res["lq"][0].shape == (8, 8, 3)
    for lq, gt in zip(res["lq"], res["gt"]):
        np.testing.assert_array_equal(lq, gt[::4, ::4])  # same region in both


def test_paired_random_crop_errors():
    bad = _pair()
    bad["lq"][1] = bad["lq"][1][:-1]
    bad["lq_path"], bad["gt_path"] = (
        ["lq/a.png", "lq/b.png", "lq/c.png"],
        ["gt/a.png", "gt/b.png", "gt/c.png"],
    )
    with pytest.raises(ValueError, match=r"frame 1.*lq/b.png vs gt/b.png"):
        PairedRandomCrop(gt_patch_size=32)(bad)
    with pytest.raises(ValueError, match="smaller than the patch"):
        PairedRandomCrop(gt_patch_size=128)(_pair())
    with pytest.raises(ValueError, match="multiple of scale"):
        PairedRandomCrop(gt_patch_size=30, scale=4)


def test_flip_transpose_mirror_are_consistent():
    res = _pair(h=3, w=5)
    gt0 = res["gt"][0].copy()
    res = Flip(flip_ratio=1.0, direction="horizontal")(res)
    res = Flip(flip_ratio=1.0, direction="vertical")(res)
    res = RandomTransposeHW(transpose_ratio=1.0)(res)
    np.testing.assert_array_equal(res["gt"][0], gt0[::-1, ::-1].transpose(1, 0, 2))
    for lq, gt in zip(res["lq"], res["gt"]):  # lq = gt[::4, ::4] before; both axes are now reversed
        np.testing.assert_array_equal(lq, gt[3::4, 3::4])
    untouched = Flip(flip_ratio=0.0)(_pair())
    assert untouched["flip_horizontal"] is False
    res = MirrorSequence()(dict(lq=[1, 2, 3], gt=[4, 5, 6]))
    assert res["lq"] == [1, 2, 3, 3, 2, 1] and res["gt"] == [4, 5, 6, 6, 5, 4]


def test_pack_inputs_data_contract_and_collate():
    res = PackInputs(scale=4)(Flip(flip_ratio=1.0)(_pair(t=3, h=4, w=6)))
    assert set(res) == {"inputs", "data_samples"}
    assert res["inputs"].shape == (3, 3, 4, 6) and res["inputs"].dtype == torch.float32
    assert res["data_samples"]["gt"].shape == (3, 3, 16, 24) and res["data_samples"]["key"] == "k"
    batch = default_collate([res, res])
    assert batch["inputs"].shape == (2, 3, 3, 4, 6)
    assert batch["data_samples"]["gt"].shape == (2, 3, 3, 16, 24)
    assert batch["data_samples"]["key"] == ["k", "k"]
    lq_only = PackInputs()(dict(key="z", lq=[np.zeros((4, 4, 3), np.float32)]))
    assert lq_only["data_samples"] == {"key": "z"}
    with pytest.raises(ValueError, match="3 LR but 2 GT"):
        PackInputs()(dict(key="z", lq=[np.zeros((4, 4, 3))] * 3, gt=[np.zeros((16, 16, 3))] * 2))


def test_read_image_16_bit(tmp_path: Path):
    import cv2

    img16 = (np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), img16)
    out = read_image(tmp_path / "a.png")
    np.testing.assert_allclose(out, img16[..., ::-1] / 65535.0, atol=1e-6)
