"""Restoring archives: deterministic output, PNG / tar variants, refusal of corrupt archives and bad paths."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from basicvsr_archival.archival import container, model_storage, package
from basicvsr_archival.archival.finetune import initial_state
from basicvsr_archival.archival.pipeline import load_archival_config, run_archive_job
from basicvsr_archival.archival.restore import RestoreError, RestoreSettings, decoded_frames, restore_archive
from basicvsr_archival.errors import OutputExistsError, OutputIsInputError, OutputPathError
from basicvsr_archival.utils.cli import run_cli
from basicvsr_archival.utils.ffmpeg import frames_to_video, probe_video

REPO = Path(__file__).resolve().parents[2]
TINY_CI = REPO / "configs" / "archival" / "tiny_ci.py"


@pytest.fixture(scope="module")
def archives(reds_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny delta archive (directory and .tar) of 6 real frames (128x96, 24000/1001 fps) and its base."""
    tmp = tmp_path_factory.mktemp("restore")
    frames = tmp / "frames"
    frames.mkdir()
    for i, f in enumerate(sorted(reds_demo_dir.glob("*.png"))[:6]):
        os.symlink(f.resolve(), frames / f"{i:08d}.png")
    src = frames_to_video(
        frames, tmp / "src.mkv", "24000/1001", codec="libx264", crf=0, preset="ultrafast",
        extra_args=["-vf", "crop=128:96:64:40"],
    )  # fmt: skip
    cfg = load_archival_config(TINY_CI)
    state, _ = initial_state(cfg.model, None, False, seed=3)
    base = tmp / "chkpts" / "tiny_base.pth"
    base.parent.mkdir()
    torch.save({"state_dict": state}, base)
    opts = {"base_checkpoint": str(base), "finetune.max_iters": 2, "restore.max_seq_len": 4}
    work = tmp / "work"
    run_archive_job(TINY_CI, src, tmp / "clip.archive", work, cfg_options=opts, progress=False)
    run_archive_job(TINY_CI, src, tmp / "clip.tar", work, resume=True, cfg_options=opts, progress=False)
    return {"dir": tmp / "clip.archive", "tar": tmp / "clip.tar", "src": src, "base": base}


def _umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tool(name: str):
    """Import ``tools/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_restore_is_bit_identical_and_keeps_count_size_fps(archives, tmp_path):
    base = archives["base"]
    first = tmp_path / "first.mp4"
    argv = [str(archives["dir"]), "-o", str(first), "--base-checkpoint", str(base), "--no-progress"]
    assert run_cli(_tool("restore").main, argv) == 0
    second = restore_archive(archives["dir"], tmp_path / "second.mp4", base_checkpoint=base, progress=False)
    assert first.read_bytes() == second.output.read_bytes()  # same chunks, same kernels, bitexact muxing
    src, out = probe_video(archives["src"]), probe_video(first)
    assert (out.num_frames, out.width, out.height, out.fps) == (
        src.num_frames,
        src.width,
        src.height,
        src.fps,
    )
    assert second.num_frames == 6 and second.device == "cpu" and second.model == "archive"


def test_png_output_from_tar_matches_lossless_video(archives, tmp_path):
    base = archives["base"]
    video = restore_archive(
        archives["dir"], tmp_path / "v.mkv", base_checkpoint=[base.parent], progress=False
    )
    frames = restore_archive(archives["tar"], tmp_path / "frames", base_checkpoint=base, progress=False)
    pngs = sorted(frames.output.glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:08d}.png" for i in range(6)]
    for a, b in zip(decoded_frames(video.output), decoded_frames(frames.output), strict=True):
        assert a.shape == (96, 128, 3) and np.array_equal(a, b)  # lossless video == PNG frames


@pytest.mark.parametrize("member", ["lr.mp4", "model.pt.xz", "manifest.json"])
def test_restore_refuses_a_corrupted_archive(archives, tmp_path, member):
    bad = tmp_path / "bad.archive"
    shutil.copytree(archives["dir"], bad)
    data = bytearray((bad / member).read_bytes())
    data[len(data) // 2] ^= 0x04
    (bad / member).write_bytes(bytes(data))
    out = tmp_path / "out.mp4"
    with pytest.raises(package.ArchiveError):
        restore_archive(bad, out, base_checkpoint=archives["base"], progress=False)
    assert not out.exists()


def test_missing_or_mismatched_base_checkpoint(archives, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./chkpts here
    monkeypatch.delenv(model_storage.ENV_CHKPTS, raising=False)
    with pytest.raises(
        package.BaseCheckpointError,
        match=r"base checkpoint tiny_base.pth \(sha256 [0-9a-f]+\.\.\.\) not found",
    ):
        restore_archive(archives["dir"], tmp_path / "o.mp4", progress=False)
    other = tmp_path / "elsewhere" / "tiny_base.pth"
    other.parent.mkdir()
    state = torch.load(archives["base"], weights_only=True)["state_dict"]
    torch.save({"state_dict": {k: v + 1 for k, v in state.items()}}, other)
    with pytest.raises(package.BaseCheckpointError, match="base checkpoint mismatch"):
        restore_archive(archives["dir"], tmp_path / "o.mp4", base_checkpoint=other.parent, progress=False)
    monkeypatch.setenv(model_storage.ENV_CHKPTS, str(archives["base"].parent))
    assert restore_archive(archives["dir"], tmp_path / "o.mkv", progress=False).num_frames == 6


def test_restore_refuses_inputs_and_existing_outputs(archives, tmp_path, capsys):
    arch, base = archives["dir"], archives["base"]
    for out in (arch, arch / "lr.mp4", arch / "restored.mp4"):
        with pytest.raises(OutputIsInputError, match="overwrite the input"):
            restore_archive(arch, out, base_checkpoint=base, progress=False)
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="already exists"):
        restore_archive(arch, existing, base_checkpoint=base, progress=False)
    assert existing.read_bytes() == b"keep me"
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(OutputPathError, match="is a folder"):
        restore_archive(arch, tmp_path / "dir.mp4", base_checkpoint=base, progress=False)
    tool = _tool("restore")
    argv = [
        str(arch),
        "-o",
        str(tmp_path / "x.mp4"),
        "--fp16",
        "--device",
        "cpu",
        "--base-checkpoint",
        str(base),
    ]
    assert run_cli(tool.main, argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "fp16 needs a CUDA device" in err and "\n" not in err
    assert not (tmp_path / "x.mp4").exists()


def test_restore_settings_layout():
    s = RestoreSettings.from_dict(
        {"device": "cpu", "max_seq_len": 4, "output": {"lossless": False, "crf": 20}}
    )
    assert s.to_dict()["output"]["crf"] == 20 and RestoreSettings.from_dict(s.to_dict()) == s
    with pytest.raises(RestoreError, match="precision"):
        RestoreSettings(precision="int4")


def test_restore_settings_overlap():
    assert RestoreSettings().overlap == 3 and RestoreSettings().to_dict()["overlap"] == 3  # resolved
    auto = [RestoreSettings.from_dict({"max_seq_len": n}).overlap for n in (None, 3, 4, 8, 30)]
    assert auto == [0, 0, 1, 2, 3]  # min(3, max_seq_len // 4): the number is what a manifest records
    s = RestoreSettings.from_dict({"max_seq_len": 9, "overlap": 4})
    assert s.overlap == 4 and RestoreSettings.from_dict(s.to_dict()) == s
    for bad in ({"max_seq_len": 8, "overlap": 4}, {"max_seq_len": None, "overlap": 1}, {"overlap": -1}):
        with pytest.raises(RestoreError, match=r"restore\.overlap"):
            RestoreSettings.from_dict(bad)


def test_restore_overlap_from_manifest_option_and_legacy_manifests(archives, tmp_path, capsys):
    base = archives["base"]
    manifest = container.verify_archive(archives["dir"]).manifest
    assert manifest["settings"]["restore"]["overlap"] == 1  # max_seq_len 4 -> the default recorded
    default = restore_archive(archives["dir"], tmp_path / "d.mkv", base_checkpoint=base, progress=False)
    assert (default.max_seq_len, default.overlap) == (4, 1)
    plain = restore_archive(
        archives["dir"], tmp_path / "p.mkv", base_checkpoint=base, overlap=0, progress=False
    )
    assert plain.overlap == 0
    # an archive written before `overlap` existed: its manifest has no such key -> restored without overlap
    legacy = tmp_path / "legacy.archive"
    shutil.copytree(archives["dir"], legacy)
    del manifest["settings"]["restore"]["overlap"]
    (legacy / package.MANIFEST_NAME).write_bytes(package.dump_manifest(manifest))
    old = restore_archive(legacy, tmp_path / "l.mkv", base_checkpoint=base, progress=False)
    assert old.overlap == 0 and old.output.read_bytes() == plain.output.read_bytes()
    argv = [
        str(archives["dir"]),
        "-o",
        str(tmp_path / "t.mkv"),
        "--base-checkpoint",
        str(base),
        "--no-progress",
    ]
    assert run_cli(_tool("restore").main, [*argv, "--max-seq-len", "3"]) == 0
    assert "chunks of 3, overlap 0" in capsys.readouterr().out  # another length: its own default
    assert run_cli(_tool("restore").main, [*argv, "--overlap", "2", "--overwrite"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "2 * overlap < max_seq_len" in err and "\n" not in err


def test_restore_to_avi_and_png_folder(archives, tmp_path):
    base = archives["base"]
    avi = restore_archive(archives["dir"], tmp_path / "r.avi", base_checkpoint=base, progress=False)
    folder = restore_archive(
        archives["dir"], f"{tmp_path / 'r.frames'}/", base_checkpoint=base, progress=False
    )
    assert stat.S_IMODE(folder.output.stat().st_mode) == 0o777 & ~_umask()  # a normal folder
    assert avi.num_frames == 6 and probe_video(avi.output).num_frames == 6
    pairs = list(zip(decoded_frames(avi.output), decoded_frames(folder.output), strict=True))
    assert len(pairs) == 6 and all(a.shape == (96, 128, 3) and np.array_equal(a, b) for a, b in pairs)


def test_restore_checks_the_output_path_first(archives, tmp_path, capsys):
    base = archives["base"]
    for out in (tmp_path / "out.xyz", tmp_path / "out.png"):
        with pytest.raises(OutputPathError, match=r"unknown output extension '\.\w+'"):
            restore_archive(archives["dir"], out, base_checkpoint=base, progress=False)
    with pytest.raises(OutputPathError, match="unknown output extension"):  # before the archive is even read
        restore_archive(tmp_path / "missing.archive", tmp_path / "out.xyz", progress=False)
    a_file = tmp_path / "passwd"
    a_file.write_text("x")
    argv = [
        str(archives["dir"]),
        "-o",
        str(a_file / "out.mp4"),
        "--base-checkpoint",
        str(base),
        "--no-progress",
    ]
    assert run_cli(_tool("restore").main, argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {a_file / 'out.mp4'}: {a_file} is a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwd"]


def test_archive_checks_its_output_and_work_dir_first(archives, tmp_path, capsys):
    a_file = tmp_path / "passwd"
    a_file.write_text("x")
    work = tmp_path / "work"
    for out, wd in ((a_file / "clip.archive", work), (tmp_path / "clip.archive", a_file / "work")):
        argv = [str(TINY_CI), str(archives["src"]), "-o", str(out), "--work-dir", str(wd), "--no-progress"]
        assert run_cli(_tool("archive").main, [*argv, "--cfg-options", "finetune.max_iters=1"]) == 1
        err = capsys.readouterr().err.strip()
        assert (
            err.startswith("error: ")
            and err.endswith(f"{a_file} is a file, not a folder")
            and "\n" not in err
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwd"]  # no work dir, nothing encoded


def test_base_checkpoint_of_random_bytes(tmp_path):
    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(package.BaseCheckpointError) as info:
        model_storage.read_state_dict(noise)
    assert (
        str(info.value)
        == f"{noise}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)"
    )
