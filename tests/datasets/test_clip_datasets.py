"""Frame-folder datasets: REDS partitions, Vimeo-90K septuplets, generic folders, per-video clips."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from basicvsr_archival.datasets import (
    REDSMultipleGTDataset,
    SRFolderMultipleGTDataset,
    VideoClipsDataset,
    Vimeo90KMultipleGTDataset,
    split_frame_ranges,
)
from basicvsr_archival.datasets.io import read_image_uint8, write_image
from basicvsr_archival.utils.imresize import imresize

PIPELINE = [
    dict(type="GenerateSegmentIndices", interval_list=[1], num_input_frames=2),
    dict(type="LoadImageFromFile", key="lq"),
    dict(type="LoadImageFromFile", key="gt"),
    dict(type="PairedRandomCrop", gt_patch_size=64, scale=4),
    dict(type="PackInputs"),
]


@pytest.fixture(scope="module")
def frame_pairs(reds_demo_dir: Path, tmp_path_factory) -> Path:
    """Four real GT frames (320x180) and their x4 LR (80x45) as PNG files in ``gt/`` and ``lq/``."""
    root = tmp_path_factory.mktemp("pairs")
    for i in range(4):
        gt = read_image_uint8(reds_demo_dir / f"{i:08d}.png")
        write_image(root / "gt" / f"{i:08d}.png", gt)
        write_image(root / "lq" / f"{i:08d}.png", imresize(gt, 0.25))
    return root


def _clip_tree(root: Path, pairs: Path, clips: list[str], frames: int = 3) -> None:
    """REDS-like ``root/{gt,lq}/{clip}/0000000i.png`` made of hard links to ``pairs``."""
    for clip in clips:
        for side in ("gt", "lq"):
            (root / side / clip).mkdir(parents=True, exist_ok=True)
            for i in range(frames):
                os.link(pairs / side / f"{i:08d}.png", root / side / clip / f"{i:08d}.png")


def test_reds_partitions_and_items(frame_pairs: Path, tmp_path: Path):
    _clip_tree(tmp_path, frame_pairs, ["000", "001", "011", "015", "020", "240"])
    kw = dict(data_root=str(tmp_path), gt_folder="gt", lq_folder="lq", pipeline=PIPELINE)
    train = REDSMultipleGTDataset(**kw)
    test = REDSMultipleGTDataset(test_mode=True, **kw)
    assert [train.get_data_info(i)["key"] for i in range(len(train))] == ["001", "240"]
    assert [test.get_data_info(i)["key"] for i in range(len(test))] == ["000", "011", "015", "020"]
    official = REDSMultipleGTDataset(val_partition="official", **kw)
    assert len(official) == 5
    item = train[0]
    assert item["inputs"].shape == (2, 3, 16, 16) and item["data_samples"]["gt"].shape == (2, 3, 64, 64)
    assert float(item["inputs"].min()) >= 0.0 and float(item["inputs"].max()) <= 1.0
    with pytest.raises(FileNotFoundError, match=r"missing official test clips"):
        REDSMultipleGTDataset(val_partition="official", test_mode=True, **kw)


def test_reds_clear_errors(frame_pairs: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="REDS GT folder not found"):
        REDSMultipleGTDataset(gt_folder=str(tmp_path / "nothing"), lq_folder=None)
    _clip_tree(tmp_path, frame_pairs, ["001", "002"])
    os.remove(tmp_path / "lq" / "002" / "00000002.png")
    with pytest.raises(
        ValueError, match=r"mismatched frame counts: .*lq/002 has 2 LR frames, .*gt/002 has 3 GT"
    ):
        REDSMultipleGTDataset(data_root=str(tmp_path), gt_folder="gt", lq_folder="lq")
    (tmp_path / "lq" / "002").rename(tmp_path / "lq" / "xyz")
    with pytest.raises(FileNotFoundError, match=r"missing LR clips \['002'\]"):
        REDSMultipleGTDataset(data_root=str(tmp_path), gt_folder="gt", lq_folder="lq")


def test_size_mismatch_names_files(frame_pairs: Path, tmp_path: Path):
    for side in ("gt", "lq"):
        (tmp_path / side / "a").mkdir(parents=True)
    write_image(tmp_path / "gt" / "a" / "0.png", read_image_uint8(frame_pairs / "gt" / "00000000.png"))
    write_image(tmp_path / "lq" / "a" / "0.png", np.zeros((40, 80, 3), np.uint8))
    with pytest.raises(
        ValueError, match=r"mismatched sizes: GT .*gt/a/0.png is 180x320 but LR .*lq/a/0.png is 40x80"
    ):
        SRFolderMultipleGTDataset(gt_folder=str(tmp_path / "gt"), lq_folder=str(tmp_path / "lq"))


def test_folder_dataset_clips_flat_and_ann(frame_pairs: Path, tmp_path: Path):
    _clip_tree(tmp_path, frame_pairs, ["calendar", "city"], frames=4)
    test_pipe = [
        dict(type="GenerateSegmentIndices", random_start=False),
        dict(type="LoadImageFromFile", key="lq"),
        dict(type="LoadImageFromFile", key="gt"),
        dict(type="PackInputs", scale=4),
    ]
    ds = SRFolderMultipleGTDataset(
        gt_folder="gt", lq_folder="lq", data_root=str(tmp_path), pipeline=test_pipe
    )
    assert len(ds) == 2 and ds[1]["data_samples"]["key"] == "city"
    assert ds[0]["inputs"].shape == (4, 3, 45, 80) and ds[0]["data_samples"]["gt"].shape == (4, 3, 180, 320)
    (tmp_path / "ann.txt").write_text("city 4\n")
    ds = SRFolderMultipleGTDataset(
        gt_folder="gt", lq_folder="lq", ann_file="ann.txt", data_root=str(tmp_path)
    )
    assert len(ds) == 1 and ds.get_data_info(0)["key"] == "city"
    flat = SRFolderMultipleGTDataset(gt_folder=str(frame_pairs / "gt"), lq_folder=None)
    info = flat.get_data_info(0)
    assert info["key"] == "gt" and info["lq_path"] is None and info["sequence_length"] == 4
    with pytest.raises(FileNotFoundError, match="LR folder not found"):
        SRFolderMultipleGTDataset(gt_folder=str(frame_pairs / "gt"), lq_folder=str(tmp_path / "none"))


def test_vimeo_septuplets(frame_pairs: Path, tmp_path: Path):
    for key in ("00001/0001", "00001/0002"):
        for side in ("gt", "lq"):
            folder = tmp_path / side / key
            folder.mkdir(parents=True)
            for i in range(1, 8):
                os.link(frame_pairs / side / f"{(i - 1) % 4:08d}.png", folder / f"im{i}.png")
    (tmp_path / "train.txt").write_text("00001/0001 (180,320,3)\n00001/0002 (180,320,3)\n")
    ds = Vimeo90KMultipleGTDataset(
        ann_file="train.txt",
        gt_folder="gt",
        lq_folder="lq",
        data_root=str(tmp_path),
        pipeline=[*PIPELINE[1:3], dict(type="MirrorSequence"), dict(type="PackInputs", scale=4)],
    )
    assert len(ds) == 2
    item = ds[1]
    assert item["inputs"].shape == (14, 3, 45, 80) and item["data_samples"]["key"] == "00001/0002"
    (tmp_path / "bad.txt").write_text("00001/0003\n")
    with pytest.raises(FileNotFoundError, match=r"00001/0003/im1.png: frame of septuplet"):
        Vimeo90KMultipleGTDataset(ann_file="bad.txt", gt_folder="gt", lq_folder="lq", data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        Vimeo90KMultipleGTDataset(ann_file="none.txt", gt_folder="gt", data_root=str(tmp_path))


def test_split_frame_ranges():
    assert split_frame_ranges(21, 8, False, num_val_frames=5) == [(0, 8), (8, 16)]
    assert split_frame_ranges(21, 8, True, num_val_frames=5) == [(16, 21)]
    assert split_frame_ranges(20, 5, False, val_ranges=[[5, 8]], min_length=2) == [
        (0, 5),
        (8, 13),
        (13, 18),
        (18, 20),
    ]
    assert split_frame_ranges(10, 4, True) == [(0, 4), (4, 8), (8, 10)]
    with pytest.raises(ValueError, match="outside"):
        split_frame_ranges(10, 4, False, val_ranges=[[8, 12]])
    with pytest.raises(ValueError, match="no training clip of at least 9"):
        split_frame_ranges(10, 8, False, num_val_frames=2, min_length=9)


def test_video_clips_dataset_holds_out_frames(reds_demo_dir: Path):
    pipe = [
        dict(type="GenerateSegmentIndices", interval_list=[1], num_input_frames=3),
        dict(type="LoadImageFromFile", key="gt"),
        dict(type="LoadImageFromFile", key="lq", allow_missing=True),
        dict(type="Degrade", scale=4, keep_existing=True),
        dict(type="PairedRandomCrop", gt_patch_size=64, scale=4),
        dict(type="PackInputs"),
    ]
    train = VideoClipsDataset(
        gt_folder=str(reds_demo_dir), clip_length=8, num_input_frames=3, num_val_frames=5, pipeline=pipe
    )
    val = VideoClipsDataset(gt_folder=str(reds_demo_dir), clip_length=8, num_val_frames=5, test_mode=True)
    train_frames = {Path(p).name for i in range(len(train)) for p in train.get_data_info(i)["gt_path"]}
    val_info = val.get_data_info(0)
    assert len(val) == 1 and val_info["key"] == "reds_demo_000/00000016" and val_info["sequence_length"] == 5
    assert not train_frames & {Path(p).name for p in val_info["gt_path"]}
    assert len(train_frames) == 16
    item = train[1]
    assert item["inputs"].shape == (3, 3, 16, 16) and item["data_samples"]["gt"].shape == (3, 3, 64, 64)
