"""Data preparation CLIs: frame extraction, clip cutting, BI / BD degradation, REDS val merge."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from basicvsr_archival.datasets.io import read_image_uint8, write_image
from basicvsr_archival.utils.ffmpeg import frames_to_video
from basicvsr_archival.utils.imresize import bd_degrade, imresize


def _tool(repo_root: Path, name: str):
    spec = importlib.util.spec_from_file_location(f"data_{name}", repo_root / "tools" / "data" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extract_frames_lossless_roundtrip(repo_root: Path, reds_demo_dir: Path, tmp_path: Path, capsys):
    tool = _tool(repo_root, "extract_frames")
    video = frames_to_video(reds_demo_dir, tmp_path / "v.mkv", 25, codec="ffv1", lossless=True, max_frames=6)
    tool.main([str(video), str(tmp_path / "frames"), "--start", "2", "--max-frames", "3"])
    assert "wrote 3 frames" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == ["00000000.png", "00000001.png", "00000002.png"]
    np.testing.assert_array_equal(
        read_image_uint8(tmp_path / "frames" / "00000001.png"),
        read_image_uint8(reds_demo_dir / "00000003.png"),
    )
    with pytest.raises(FileExistsError, match="already holds images"):
        tool.extract_frames(video, tmp_path / "frames")
    with pytest.raises(ValueError, match="no such file"):
        tool.extract_frames(tmp_path / "missing.mp4", tmp_path / "x")


def test_cut_clips_reds_layout(repo_root: Path, reds_demo_dir: Path, tmp_path: Path):
    tool = _tool(repo_root, "cut_clips")
    clips = tool.cut_clips(reds_demo_dir, tmp_path / "clips", clip_length=8, min_length=5)
    assert [c.name for c in clips] == ["000", "001", "002"]  # 8 + 8 + 5 frames
    assert sorted(p.name for p in clips[2].iterdir()) == [f"{i:08d}.png" for i in range(5)]
    assert (clips[1] / "00000000.png").read_bytes() == (reds_demo_dir / "00000008.png").read_bytes()
    assert len(tool.cut_clips(reds_demo_dir, tmp_path / "full", clip_length=8)) == 2  # short tail dropped
    with pytest.raises(FileExistsError, match="clip folder exists"):
        tool.cut_clips(reds_demo_dir, tmp_path / "clips", clip_length=8)
    with pytest.raises(ValueError, match="must not be"):
        tool.cut_clips(tmp_path / "clips" / "000", tmp_path / "clips" / "000" / "out", clip_length=2)


def test_degrade_bi_bd_tree(repo_root: Path, reds_demo_dir: Path, tmp_path: Path):
    tool = _tool(repo_root, "degrade")
    gt = tmp_path / "GT"
    for clip in ("a", "b"):
        write_image(gt / clip / "00000000.png", read_image_uint8(reds_demo_dir / "00000000.png"))
    assert tool.degrade_tree(gt, tmp_path / "BIx4", "BI") == 2
    src = read_image_uint8(gt / "a" / "00000000.png")
    np.testing.assert_array_equal(
        read_image_uint8(tmp_path / "BIx4" / "b" / "00000000.png"), imresize(src, 0.25)
    )
    tool.main([str(gt), str(tmp_path / "BDx4"), "--degradation", "BD"])
    np.testing.assert_array_equal(read_image_uint8(tmp_path / "BDx4" / "a" / "00000000.png"), bd_degrade(src))
    assert tool.degrade_tree(gt, tmp_path / "BIx4", "BI") == 0  # existing outputs are kept
    with pytest.raises(ValueError, match="must not be"):
        tool.degrade_tree(gt, gt / "a", "BI")
    write_image(tmp_path / "odd" / "x.png", np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(
        ValueError, match=r"x.png: size 10x12 is not a multiple of scale 4 \(use --mod-crop\)"
    ):
        tool.degrade_tree(tmp_path / "odd", tmp_path / "odd_lr")
    assert tool.degrade_tree(tmp_path / "odd", tmp_path / "odd_lr", mod_crop=True) == 1
    assert read_image_uint8(tmp_path / "odd_lr" / "x.png").shape == (2, 3, 3)


def test_merge_reds_val(repo_root: Path, reds_demo_dir: Path, tmp_path: Path):
    tool = _tool(repo_root, "merge_reds_val")
    for clip in ("000", "001"):
        write_image(
            tmp_path / "val" / clip / "00000000.png", read_image_uint8(reds_demo_dir / "00000000.png")
        )
    assert tool.merge_val(tmp_path / "val", tmp_path / "train", link=True) == 2
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["240", "241"]
    with pytest.raises(FileExistsError, match="target clip exists"):
        tool.merge_val(tmp_path / "val", tmp_path / "train")
