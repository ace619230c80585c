"""Clips decoded straight from video files (PyAV): frame-exact seeking, LR/GT pairs, on-the-fly LR."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from basicvsr_archival.datasets import VideoFileDataset, read_video_frames
from basicvsr_archival.datasets.io import read_image_uint8, write_image
from basicvsr_archival.utils.ffmpeg import frames_to_video, iter_video_frames
from basicvsr_archival.utils.imresize import imresize


@pytest.fixture(scope="module")
def videos(reds_demo_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """Lossless (ffv1) GT video of the 21 demo frames, its x4 LR video, a short LR video and an H.264 GT."""
    root = tmp_path_factory.mktemp("videos")
    for i in range(21):
        write_image(
            root / "lr" / f"{i:08d}.png", imresize(read_image_uint8(reds_demo_dir / f"{i:08d}.png"), 0.25)
        )
    return dict(
        gt=frames_to_video(reds_demo_dir, root / "gt.mkv", 25, codec="ffv1", lossless=True),
        lq=frames_to_video(root / "lr", root / "lq.mkv", 25, codec="ffv1", lossless=True),
        lq_short=frames_to_video(
            root / "lr", root / "lq_short.mkv", 25, codec="ffv1", lossless=True, max_frames=20
        ),
        h264=frames_to_video(reds_demo_dir, root / "gt.mp4", 25),
    )


def test_read_video_frames_is_frame_exact(videos: dict[str, Path], reds_demo_dir: Path):
    frames = read_video_frames(videos["gt"], [12, 11, 12, 0])
    for got, idx in zip(frames, [12, 11, 12, 0]):
        np.testing.assert_array_equal(got, read_image_uint8(reds_demo_dir / f"{idx:08d}.png"))
    # lossy H.264: the seeking reader must return the very frames sequential decoding gives
    sequential = list(iter_video_frames(videos["h264"]))
    for idx, got in zip([17, 18, 19], read_video_frames(videos["h264"], [17, 18, 19])):
        np.testing.assert_array_equal(got, sequential[idx])
    with pytest.raises(IndexError, match="frames \\[30\\] not found"):
        read_video_frames(videos["gt"], [20, 30])


def test_video_pair_dataset(videos: dict[str, Path], reds_demo_dir: Path):
    pipe = [
        dict(type="GenerateSegmentIndices", interval_list=[1], num_input_frames=3),
        dict(type="LoadVideoFrames", key="gt"),
        dict(type="LoadVideoFrames", key="lq"),
        dict(type="PairedRandomCrop", gt_patch_size=64, scale=4),
        dict(type="PackInputs"),
    ]
    ds = VideoFileDataset(
        gt_videos=str(videos["gt"]),
        lq_videos=str(videos["lq"]),
        clip_length=10,
        num_input_frames=3,
        num_val_frames=1,
        pipeline=pipe,
    )
    assert [ds.get_data_info(i)["key"] for i in range(len(ds))] == ["gt/00000000", "gt/00000010"]
    item = ds[1]
    assert item["inputs"].shape == (3, 3, 16, 16) and item["data_samples"]["gt"].shape == (3, 3, 64, 64)
    val = VideoFileDataset(
        gt_videos=[str(videos["gt"])],
        lq_videos=[str(videos["lq"])],
        num_val_frames=1,
        test_mode=True,
        pipeline=[
            dict(type="GenerateSegmentIndices", random_start=False),
            dict(type="LoadVideoFrames", key="gt"),
            dict(type="LoadVideoFrames", key="lq"),
            dict(type="PackInputs", scale=4),
        ],
    )
    out = val[0]
    assert out["data_samples"]["key"] == "gt/00000020" and out["inputs"].shape == (1, 3, 45, 80)
    expected = read_image_uint8(reds_demo_dir / "00000020.png").astype(np.float32) / 255
    np.testing.assert_allclose(out["data_samples"]["gt"][0].permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_gt_video_with_on_the_fly_degradation(videos: dict[str, Path]):
    pipe = [
        dict(type="GenerateSegmentIndices", interval_list=[1], num_input_frames=2),
        dict(type="LoadVideoFrames", key="gt"),
        dict(type="Degrade", scale=4, degradation="BI"),
        dict(type="PackInputs", scale=4),
    ]
    ds = VideoFileDataset(gt_videos=str(videos["gt"]), clip_length=21, num_input_frames=2, pipeline=pipe)
    item = ds[0]
    assert item["inputs"].shape == (2, 3, 45, 80) and item["data_samples"]["gt"].shape == (2, 3, 180, 320)


def test_video_dataset_errors(videos: dict[str, Path], tmp_path: Path):
    with pytest.raises(
        ValueError, match=r"mismatched frame counts: .*lq_short.mkv has 20 LR frames, .*gt.mkv has 21"
    ):
        VideoFileDataset(gt_videos=str(videos["gt"]), lq_videos=str(videos["lq_short"]))
    with pytest.raises(
        ValueError, match=r"mismatched sizes: GT .*gt.mkv is 180x320 but LR .*gt.mp4 is 180x320"
    ):
        VideoFileDataset(gt_videos=str(videos["gt"]), lq_videos=str(videos["h264"]))
    with pytest.raises(FileNotFoundError, match=r"missing\.mp4: video file not found"):
        VideoFileDataset(gt_videos=str(tmp_path / "missing.mp4"))
    with pytest.raises(ValueError, match="1 LR videos for 2 GT videos"):
        VideoFileDataset(gt_videos=[str(videos["gt"])] * 2, lq_videos=[str(videos["lq"])])
