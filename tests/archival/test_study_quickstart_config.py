"""``configs/archival/study_quickstart.py`` loads, its settings validate, and it is a small study."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from basicvsr_archival.archival.study import run_study
from basicvsr_archival.archival.study_config import StudyError, archival_config, load_study

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "archival" / "study_quickstart.py"


def test_config_loads_with_one_base_level() -> None:
    cfg = Config.fromfile(str(CONFIG))
    assert '_base_ = ["./tiny_ci.py"]' in CONFIG.read_text()  # one level, on the tiny CI settings
    assert cfg.model.generator.mid_channels == 8 and cfg.model.generator.num_blocks == 1
    assert cfg.model.generator.flow_estimator == "none"  # an explicit model option: no SPyNet at all
    assert cfg.study.base_pretrain.video is None  # given on the command line


def test_settings_validate_and_describe_a_small_study(tmp_path: Path) -> None:
    base_clip = tmp_path / "sample_base.mkv"
    base_clip.write_bytes(b"only checked to exist here")
    study = load_study(CONFIG, {"study.base_pretrain.video": str(base_clip)})
    s, a = study.settings, study.archival
    assert s.scales == (2,) and s.crfs == (18, 32)
    assert s.variants == ("full", "bicubic", "sr_base", "sr_finetuned") and s.vmaf is True
    assert s.base_pretrain["video"] == str(base_clip)
    assert s.base_pretrain["finetune"]["max_iters"] == 75
    assert study.tco.original_crf == 18 and study.tco.original_crf in s.crfs
    assert (a.codec.scale, a.codec.crf) == (2, 18)
    assert a.model["generator"]["upscale_factor"] == 2
    assert a.model["generator"]["flow_estimator"] == "none"  # recorded in every archive's manifest
    ft = a.finetune
    assert (ft.enabled, ft.max_iters, ft.patch_size, ft.clip_length, ft.lr_schedule) == (
        True,
        25,
        128,
        2,
        "cosine",
    )
    assert set(ft.frozen) == {"deform_align", "conv_hr", "upsample1"}  # no spynet to freeze
    assert ft.max_seconds >= 60  # a cap for slow machines, not the budget that binds
    assert a.restore.device == "cpu" and a.restore.max_seq_len == 24
    for crf in s.crfs:  # the archive job of every ladder point builds
        point = archival_config(study.cfg, 2, crf, base=tmp_path / "base.pth")
        assert (point.codec.crf, point.codec.scale, point.finetune.max_iters) == (crf, 2, 25)


def test_missing_base_clip_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match=r"base_pretrain\.video: '.*nope\.mkv' is not a file"):
        load_study(CONFIG, {"study.base_pretrain.video": str(tmp_path / "nope.mkv")})


def test_without_a_base_clip_the_study_stops_before_any_work(tmp_path: Path) -> None:
    # the quick start passes study.base_pretrain.video; without it 'sr_base' has no base model
    tool = REPO / "tools" / "make_sample_video.py"
    video = tmp_path / "v.mkv"
    subprocess.run([sys.executable, str(tool), str(video), "--frames", "2", "--size", "64x48"], check=True,
                   capture_output=True)  # fmt: skip
    with pytest.raises(StudyError, match=r"'sr_base' needs base_checkpoint or study\.base_pretrain"):
        run_study(load_study(CONFIG), [video], tmp_path / "work", progress=False, log=lambda _: None)
    assert not (tmp_path / "work" / "videos" / "v" / "points").exists()
