"""SR-aware encoding (issue 15 item 1): per-segment CRFs chosen by post-SR PSNR per byte.

The end-to-end tests run on a 16-frame 128x72 clip made of 8 frames of ``bigbuckbunny.mp4`` and 8 of
``tree.avi`` (``../shared/data/videos``), with the tiny_ci c8n1 x2 model fine-tuned briefly on the
uniform-CRF LR stream (the order of the issue: train on the uniform stream, then allocate with it).
x264 runs single-threaded (``-threads 1``) so that its bytes are the same on every machine.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from basicvsr_archival.archival.sr_aware import LadderTable, allocate, greedy_allocation
from basicvsr_archival.archival.sr_aware_settings import SrAwareError, SrAwareSettings

CLIP_FPS = 25
GOP = 8
LADDER = (23, 28, 33, 38)
CONFIG_CRF = 30  # the uniform stream's CRF: the default budget is its payload


# ------------------------------------------------------------------------------------------ greedy rule
def _table(frames, rows_bytes, rows_psnr, crfs=None) -> LadderTable:
    """A hand-made ladder table (rows = segments)."""
    crfs = crfs or tuple(range(len(rows_bytes[0])))
    return LadderTable(
        tuple(crfs), tuple(frames), tuple(map(tuple, rows_bytes)), tuple(map(tuple, rows_psnr))
    )


# rungs ordered from the best CRF to the cheapest; seg 0 gains 4 dB for its first 100 bytes, seg 1 1.5 dB
# for 200; seg 1's middle rung lies under its hull in the second table
HAND = _table((8, 8), [[400, 200, 100], [600, 300, 100]], [[35.0, 34.0, 30.0], [30.0, 29.5, 28.0]])


@pytest.mark.parametrize(
    ("budget", "choice"),
    [
        (150, [2, 2]),  # nothing fits: the cheapest rungs
        (300, [1, 2]),  # seg 0: 4 * 8 / 100 = 0.32 per byte beats seg 1: 1.5 * 8 / 200 = 0.06
        (499, [1, 2]),  # seg 1's step (+200) does not fit, seg 0's next (+200) neither
        (500, [1, 1]),  # then seg 1 (0.06) before seg 0's second step (1 * 8 / 200 = 0.04)
        (700, [0, 1]),
        (1000, [0, 0]),
    ],
)
def test_greedy_rule_exact_choices(budget, choice):
    """Greedy marginal gain: each step takes the largest ΔPSNR * frames / Δbytes that still fits."""
    assert greedy_allocation(HAND, budget=budget) == choice
    got, met = allocate(HAND, budget=budget)
    assert (got, met) == (choice, budget >= 200)
    assert HAND.total_bytes(got) <= max(budget, 200)


def test_greedy_rule_skips_rungs_under_the_hull_and_weighs_frames():
    """A rung under the convex hull is jumped over; a longer segment's dB count for more frames."""
    table = _table((4, 12), [[300, 200, 100], [300, 200, 100]], [[33.0, 30.5, 30.0], [31.0, 30.0, 29.0]])
    # seg 0 from rung 2: rung 1 gives 0.5 dB / 100 B, rung 0 gives 3 dB / 200 B: the hull goes to rung 0,
    # 0.015 dB per byte, but only 4 frames (gain 0.06); seg 1: 0.01 dB per byte on 12 frames (0.12) twice
    assert greedy_allocation(table, budget=300) == [2, 1]
    assert greedy_allocation(table, budget=400) == [2, 0]
    assert greedy_allocation(table, budget=600) == [0, 0]
    assert greedy_allocation(table, budget=500) == [2, 0]  # seg 0's hull step (+200) does not fit


def test_allocate_target_psnr_and_uniform_fallback():
    """Target mode stops at the first choice reaching the target; a better-fitting uniform rung wins."""
    assert allocate(HAND, target_psnr=31.0) == ([1, 2], True)  # mean (34 + 28) / 2 = 31
    assert allocate(HAND, target_psnr=40.0) == ([0, 0], False)
    # seg 1's step (+60 B, 2.5 dB) has the best gain, then seg 0's (+100 B) no longer fits 350 B: the
    # greedy rule ends at 30.25 dB, uniform rung 1 fits 350 B with 31.25 dB
    table = _table((8, 8), [[400, 200, 100], [160, 150, 100]], [[35.0, 34.0, 30.0], [30.5, 28.5, 28.0]])
    assert greedy_allocation(table, budget=350) == [2, 0]
    assert allocate(table, budget=350) == ([1, 1], True)
    assert allocate(table, budget=360) == ([1, 0], True)  # the greedy choice (32.25 dB) is the better one
    with pytest.raises(ValueError, match="exactly one"):
        allocate(table)


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({"gop": 0}, "codec.sr_aware.gop"),
        ({"gop": 8.0}, "codec.sr_aware.gop"),
        ({"crfs": (23,)}, "codec.sr_aware.crfs"),
        ({"crfs": (23, 23)}, "codec.sr_aware.crfs"),
        ({"crfs": "23,28"}, "codec.sr_aware.crfs"),
        ({"budget": 0}, "codec.sr_aware.budget"),
        ({"target_psnr": 120}, "codec.sr_aware.target_psnr"),
        ({"budget": 1000, "target_psnr": 30.0}, "not both"),
        ({"enabled": "yes"}, "codec.sr_aware.enabled"),
        ({"refine_iters": -1}, "codec.sr_aware.refine_iters"),
        ({"gops": 8}, "unknown codec.sr_aware setting(s) ['gops']"),
    ],
)
def test_bad_settings_give_one_line_error_naming_the_key(cfg, key):
    """Every bad ``codec.sr_aware`` value is one line naming its key."""
    with pytest.raises(SrAwareError) as err:
        SrAwareSettings.from_dict(cfg)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_settings_check_the_codec_and_add_its_crf():
    """Only libx264 is accepted; the ladder must lie in the codec's CRF range and holds the config's CRF."""
    from basicvsr_archival.archival.codec import CodecSettings

    settings = SrAwareSettings.from_dict({"enabled": True, "gop": 8, "crfs": [33, 23, 28]})
    assert settings.crfs == (23, 28, 33)
    assert SrAwareSettings.from_dict(settings.to_dict()) == settings
    assert settings.ladder(CodecSettings(crf=30)) == (23, 28, 30, 33)
    settings.check_codec(CodecSettings(crf=30))
    with pytest.raises(SrAwareError, match="supports codec"):
        settings.check_codec(CodecSettings(codec="libx265"))
    with pytest.raises(SrAwareError, match=r"crfs must lie in \[0, 51\]"):
        SrAwareSettings(crfs=(23, 60)).check_codec(CodecSettings())


# ------------------------------------------------------------------------------------------ end to end
def _tiny_model(cfg, codec, clip: Path, work: Path):
    """The tiny_ci model fine-tuned for 30 iterations on the uniform-CRF LR stream of ``clip``."""
    import torch

    from basicvsr_archival.archival.codec import decode_frames, encode_lr
    from basicvsr_archival.archival.finetune import finetune_video, read_state_dict
    from basicvsr_archival.archival.finetune_settings import FinetuneSettings
    from basicvsr_archival.models.builder import build_restorer
    from basicvsr_archival.utils.ffmpeg import VideoWriter

    encode_lr(clip, work / "uniform.mp4", codec)
    with VideoWriter(work / "uniform.mkv", fps=CLIP_FPS, lossless=True, codec="ffv1") as writer:
        writer.write_many(decode_frames(work / "uniform.mp4"))
    ft = FinetuneSettings.from_dict(
        {**cfg.finetune, "patch_size": 64, "max_iters": 30, "checkpoint_interval": 30}
    )
    result = finetune_video(cfg.model, work / "uniform.mkv", clip, work / "ft", ft, scale=2, progress=False)
    torch.manual_seed(0)
    return build_restorer(cfg.model, read_state_dict(result.checkpoint)).eval()


@dataclass
class Run:
    """The SR-aware encode of the test clip and what it is compared with."""

    clip: Path
    result: object
    uniform: dict  # crf -> (file bytes, payload bytes, post-SR PSNR) of encode_lr's stream
    psnr: float  # measured post-SR PSNR of the SR-aware stream


@pytest.fixture(scope="module")
def clip(two_source_clip: Path) -> Path:
    """The two-source test clip (16 frames, 128x72; conftest)."""
    return two_source_clip


@pytest.fixture(scope="module")
def sr_aware_run(clip: Path, repo_root: Path, tmp_path_factory) -> Run:
    """Clip, model, SR-aware encode, and the uniform-CRF curve (encode_lr at every ladder CRF)."""
    from mmengine.config import Config

    from basicvsr_archival.archival.codec import CodecSettings, encode_lr
    from basicvsr_archival.archival.sr_aware import post_sr_psnr, sr_aware_encode, stream_payload

    cfg = Config.fromfile(str(repo_root / "configs/archival/tiny_ci.py"))
    codec = CodecSettings.from_dict({**cfg.codec, "crf": CONFIG_CRF, "extra_args": ("-threads", "1")})
    work = tmp_path_factory.mktemp("sr_aware")
    model = _tiny_model(cfg, codec, clip, work)
    settings = SrAwareSettings(enabled=True, gop=GOP, crfs=LADDER)
    result = sr_aware_encode(
        clip,
        work / "sr_aware.mp4",
        codec,
        settings,
        model,
        work,
        uniform=work / "uniform.mp4",
        keep_ladder=True,
    )
    uniform = {}
    for crf in settings.ladder(codec):
        enc = encode_lr(
            clip, work / f"uniform_{crf}.mp4", CodecSettings.from_dict({**codec.to_dict(), "crf": crf})
        )
        uniform[crf] = (
            enc.bytes,
            stream_payload(enc.dst).bytes,
            float(np.mean(post_sr_psnr(model, [enc.dst], clip))),
        )
    psnr = float(np.mean(post_sr_psnr(model, [result.dst], clip)))
    return Run(clip, result, uniform, psnr)


def test_sr_aware_stream_decodes_to_the_chosen_segments(sr_aware_run):
    """One valid stream: 16 frames of 64x36 yuv420p, bit-identical to the chosen ladder segments."""
    from basicvsr_archival.utils.ffmpeg import count_video_frames, iter_video_frames, probe_video

    res = sr_aware_run.result
    info = probe_video(res.dst)
    assert (info.width, info.height, info.pix_fmt, info.fps) == (64, 36, "yuv420p", CLIP_FPS)
    assert count_video_frames(res.dst, decode=True) == res.num_frames == 16
    ladder = res.dst.parent / "ladder"
    chosen = [ladder / f"c{crf}_{s:05d}.mp4" for s, crf in enumerate(res.crfs)]
    expected = [f for path in chosen for f in iter_video_frames(path)]
    got = list(iter_video_frames(res.dst))
    assert len(got) == len(expected) == 16
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_manifest_record_has_per_segment_crfs(sr_aware_run):
    """The record: one CRF per segment (two distinct here), bytes within the uniform stream's payload."""
    res, uniform = sr_aware_run.result, sr_aware_run.uniform
    record = res.to_dict()
    crfs = [s["crf"] for s in record["segments"]]
    assert crfs == res.crfs and len(crfs) == 2 and len(set(crfs)) == 2
    assert [s["start"] for s in record["segments"]] == [0, GOP]
    assert record["budget"] == uniform[CONFIG_CRF][1] and record["goal_met"]
    assert record["stream_bytes"] == sum(s["bytes"] for s in record["segments"]) <= record["budget"]
    assert record["ladder"]["crfs"] == sorted({*LADDER, CONFIG_CRF})
    assert len(record["uniform_closed_gop"]) == len(record["ladder"]["crfs"])


def test_post_sr_psnr_beats_uniform_crf_at_equal_bytes(sr_aware_run):
    """Post-SR PSNR of the SR-aware stream is above the uniform-CRF curve at the same bytes (PCHIP and
    linear in log bytes, on file and on payload bytes); post-SR PSNR falls with every CRF step."""
    from scipy.interpolate import PchipInterpolator

    res, uniform = sr_aware_run.result, sr_aware_run.uniform
    crfs = sorted(uniform)
    quality = np.array([uniform[c][2] for c in crfs])
    assert np.all(np.diff(quality) < 0)  # the model's output depends on the CRF
    for column, nbytes in ((0, res.bytes), (1, res.stream_bytes)):
        rates = np.log([uniform[c][column] for c in crfs])[::-1]  # ascending
        assert rates[0] < np.log(nbytes) < rates[-1]
        at_pchip = float(PchipInterpolator(rates, quality[::-1])(np.log(nbytes)))
        at_linear = float(np.interp(np.log(nbytes), rates, quality[::-1]))
        assert sr_aware_run.psnr > max(at_pchip, at_linear)


def test_archive_job_with_sr_aware_encoding_verifies_and_restores(clip, repo_root, tmp_path):
    """``codec.sr_aware.enabled``: the job fine-tunes on the uniform stream, re-encodes per segment with
    that model, archives the SR-aware stream as the only LR member, and the archive restores 16 frames."""
    import torch

    from basicvsr_archival.archival.container import verify_archive
    from basicvsr_archival.archival.finetune import read_state_dict
    from basicvsr_archival.archival.package import sha256_file
    from basicvsr_archival.archival.pipeline import run_archive_job
    from basicvsr_archival.archival.restore import load_archive_model, restore_archive
    from basicvsr_archival.utils.ffmpeg import probe_video

    opts = {
        "codec.crf": CONFIG_CRF, "codec.extra_args": ["-threads", "1"],
        "codec.sr_aware": {"enabled": True, "gop": GOP, "crfs": [28, 33], "refine_iters": 3},
        "finetune.max_iters": 10, "finetune.patch_size": 64, "storage.compression": "none",
        "storage.dtype": "fp32",
    }  # fmt: skip
    archive = tmp_path / "clip.archive"
    job = run_archive_job(
        repo_root / "configs/archival/tiny_ci.py", clip, archive, cfg_options=opts, progress=False
    )
    assert "sr_aware" in job.stages_run
    manifest = verify_archive(archive).manifest
    lr = manifest["lr"]
    assert [s["start"] for s in lr["segments"]] == [0, GOP]
    assert all(s["crf"] in (28, CONFIG_CRF, 33) for s in lr["segments"])
    assert lr["sr_aware"]["budget"] == job.manifest["lr"]["sr_aware"]["budget"] > 0
    assert lr["sr_aware"]["stream_bytes"] <= lr["sr_aware"]["budget"]
    assert manifest["settings"]["sr_aware"]["crfs"] == [28, 33] and "sr_aware" in manifest["timings"]
    assert lr["sr_aware"]["ladder"]["crfs"] == [28, CONFIG_CRF, 33]
    # the SR-aware stream is the one LR member; the uniform one stayed in the work dir
    assert sorted(manifest["members"]) == sorted(["lr.mp4", manifest["model"]["member"]])
    assert sha256_file(archive / "lr.mp4") == sha256_file(job.work_dir / "lr_sr_aware.mp4")
    assert sha256_file(archive / "lr.mp4") != sha256_file(job.work_dir / "lr.mp4")
    assert not (job.work_dir / "sr_aware" / "ladder").exists()
    # the short fine-tune on the final stream started from the model that chose it, and is the one archived
    refine = lr["sr_aware"]["refine"]
    assert refine["iters"] == 3 and refine["init"]["from"] == "base"
    stored = load_archive_model(manifest, archive, str(archive)).state_dict()
    refined = read_state_dict(job.work_dir / "sr_aware" / "refine" / "finetuned.pth")
    uniform = read_state_dict(job.work_dir / "finetune" / "finetuned.pth")
    changed = [k for k in refined if not torch.equal(refined[k], uniform[k])]
    assert changed and all(torch.equal(stored[k], refined[k]) for k in stored)
    res = restore_archive(archive, tmp_path / "restored.mkv", lossless=True, progress=False)
    info = probe_video(tmp_path / "restored.mkv")
    assert (res.num_frames, info.num_frames, info.width, info.height) == (16, 16, 128, 72)


def test_sr_aware_config_errors_name_the_key(repo_root):
    """A bad ``codec.sr_aware`` in an archival config is one ConfigError line naming config and key."""
    from basicvsr_archival.archival.job_config import ConfigError, load_archival_config

    cfg = repo_root / "configs/archival/tiny_ci.py"
    for opts, key in (
        ({"codec.sr_aware": {"enabled": True, "gop": -1}}, "codec.sr_aware.gop"),
        ({"codec.codec": "libx265", "codec.crf": 28, "codec.sr_aware": {"enabled": True}}, "supports codec"),
    ):
        with pytest.raises(ConfigError) as err:
            load_archival_config(cfg, opts)
        assert str(err.value).startswith("tiny_ci: ") and key in str(err.value) and "\n" not in str(err.value)
    off = load_archival_config(cfg)
    assert not off.sr_aware.enabled and "sr_aware" not in off.to_dict()
    on = load_archival_config(cfg, {"codec.sr_aware": {"enabled": True}})
    assert on.to_dict()["sr_aware"]["enabled"] and on.fingerprint() != off.fingerprint()
