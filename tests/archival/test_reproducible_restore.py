"""Reproducible restores (issue 11): same bytes for any thread count, the manifest pins the kernels."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from basicvsr_archival.archival.pipeline import run_archive_job
from basicvsr_archival.archival.restore import (
    decoded_frames,
    restore_archive,
    restore_backend,
    warn_if_backend_differs,
)
from basicvsr_archival.utils.ffmpeg import frames_to_video

REPO = Path(__file__).resolve().parents[2]
TINY_CI = REPO / "configs" / "archival" / "tiny_ci.py"
BACKEND_ENV = ("BASICVSR_CONV_IMPL", "BASICVSR_WINOGRAD_TILE", "BASICVSR_DCN_IMPL", "BASICVSR_DCN_CHUNK_MB")


@pytest.fixture(scope="module")
def scratch_job(reds_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny_ci archive trained from scratch (2 iterations) of 6 real frames cropped to 192x128 (LR 96x64).

    192x128 is about the smallest size where PyTorch's bilinear x2 skip is split across 2 threads
    (its 73,728 outputs exceed the 32,768-element grain): before the fix 2 of the 6 frames differed.
    """
    tmp = tmp_path_factory.mktemp("reproducible")
    frames = tmp / "frames"
    frames.mkdir()
    for i, f in enumerate(sorted(reds_demo_dir.glob("*.png"))[:6]):
        os.symlink(f.resolve(), frames / f"{i:08d}.png")
    src = frames_to_video(
        frames, tmp / "src.mkv", 25, codec="libx264", crf=0, preset="ultrafast",
        extra_args=["-vf", "crop=192:128:0:0"],
    )  # fmt: skip
    out = tmp / "clip.archive"
    run_archive_job(TINY_CI, src, out, tmp / "work", cfg_options={"finetune.max_iters": 2}, progress=False)
    return {"archive": out, "src": src, "work": tmp / "work", "tmp": tmp}


@pytest.fixture(scope="module")
def scratch_archive(scratch_job: dict[str, Path]) -> Path:
    """The archive of :func:`scratch_job`."""
    return scratch_job["archive"]


def _repackage(job: dict[str, Path], name: str, **storage) -> Path:
    """Another archive of the scratch job's fine-tuned model with other storage settings (packaging only)."""
    opts = {"finetune.max_iters": 2, **{f"storage.{k}": v for k, v in storage.items()}}
    out = job["tmp"] / name
    if not out.exists():
        run_archive_job(TINY_CI, job["src"], out, job["work"], resume=True, cfg_options=opts, progress=False)
    return out


def _restore_in_subprocess(archive: Path, out: Path, threads: int) -> bytes:
    """``tools/restore.py ARCHIVE -o OUT`` in a fresh interpreter with ``OMP_NUM_THREADS=threads``."""
    env = {k: v for k, v in os.environ.items() if k not in BACKEND_ENV}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(REPO / "tools" / "restore.py"), str(archive), "-o", str(out), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def test_restore_gives_the_same_bytes_for_1_and_2_threads(scratch_archive, tmp_path):
    one = _restore_in_subprocess(scratch_archive, tmp_path / "t1.mkv", 1)
    two = _restore_in_subprocess(scratch_archive, tmp_path / "t2.mkv", 2)
    frames1 = [hashlib.sha256(f.tobytes()).hexdigest() for f in decoded_frames(tmp_path / "t1.mkv")]
    frames2 = [hashlib.sha256(f.tobytes()).hexdigest() for f in decoded_frames(tmp_path / "t2.mkv")]
    assert len(frames1) == len(frames2) == 6
    assert sum(a != b for a, b in zip(frames1, frames2)) == 0  # frames differing by thread count
    assert one == two and len(one) > 10_000  # the whole file, byte for byte


def test_manifest_records_the_backend_and_restore_follows_it(scratch_archive, tmp_path, monkeypatch, caplog):
    from basicvsr_archival.archival.container import verify_archive

    rec = verify_archive(scratch_archive).manifest["restore_backend"]
    assert rec == restore_backend()  # recorded at archive time, as this process sees it
    assert rec["backend"] == "cpu_kernels" and rec["threads"] == "any"  # kernels build here
    assert rec["settings"]["conv_impl"] == "auto" and rec["settings"]["winograd_tile"] in (4, 6)
    assert "kernel_variant" in rec and rec["encoder_threads"] == 4
    from basicvsr_archival.archival import restore as restore_mod

    applied = []  # (backend, settings) of every restore, as handed to apply_backend
    real_apply = restore_mod.apply_backend
    monkeypatch.setattr(
        restore_mod, "apply_backend", lambda m, b, s: applied.append((b, s.to_dict())) or real_apply(m, b, s)
    )
    default = restore_archive(scratch_archive, tmp_path / "default.mkv", progress=False)
    # other defaults in the environment (documented overrides) would change a plain inference ...
    monkeypatch.setenv("BASICVSR_CONV_IMPL", "native")
    monkeypatch.setenv("BASICVSR_WINOGRAD_TILE", "4")
    pinned = restore_archive(scratch_archive, tmp_path / "pinned.mkv", progress=False)
    # ... but a restore follows the archive's recorded backend and settings
    assert pinned.output.read_bytes() == default.output.read_bytes()
    # an explicit override is applied, with one warning line naming both
    with caplog.at_level(logging.WARNING):
        native = restore_archive(
            scratch_archive, tmp_path / "native.mkv", progress=False, backend_settings={"conv_impl": "native"}
        )
        plain = restore_archive(scratch_archive, tmp_path / "plain.mkv", progress=False, backend="torch")
    lines = [r.getMessage() for r in caplog.records if "instead of the archive's" in r.getMessage()]
    assert len(lines) == 2 and "'conv_impl': 'native'" in lines[0] and "'conv_impl': 'auto'" in lines[0]
    assert "with backend torch" in lines[1] and "\n" not in lines[1]
    assert native.num_frames == plain.num_frames == 6
    recorded = ("cpu_kernels", rec["settings"])
    assert applied[:2] == [recorded, recorded]  # the environment did not change what ran
    assert applied[2] == ("cpu_kernels", {**rec["settings"], "conv_impl": "native"})
    assert applied[3][0] == "torch"
    # (this tiny from-scratch model's outputs round to the same 8-bit frames on every backend)


def test_plain_torch_restores_pin_the_recorded_thread_count(scratch_archive, tmp_path, monkeypatch):
    # an archive recorded with the plain torch backend: its restores run with the recorded thread
    # count, so 1 and 2 threads in the environment give the same bytes
    import json
    import shutil

    from basicvsr_archival.archival.package import MANIFEST_NAME, dump_manifest

    plain = tmp_path / "plain.archive"
    shutil.copytree(scratch_archive, plain)
    manifest = json.loads((plain / MANIFEST_NAME).read_text())
    manifest["restore_backend"] = {**restore_backend("torch"), "threads": 2}
    assert manifest["restore_backend"]["backend"] == "torch"
    (plain / MANIFEST_NAME).write_bytes(dump_manifest(manifest))
    one = _restore_in_subprocess(plain, tmp_path / "t1.mkv", 1)
    two = _restore_in_subprocess(plain, tmp_path / "t2.mkv", 2)
    assert one == two and len(one) > 10_000
    # in this process: the restore runs the plain network on the recorded thread count
    from basicvsr_archival.archival import restore as restore_mod

    seen = []
    real_pin = restore_mod.pinned_threads
    monkeypatch.setattr(restore_mod, "pinned_threads", lambda n: seen.append(n) or real_pin(n))
    threads = torch.get_num_threads()
    restore_archive(plain, tmp_path / "here.mkv", progress=False)
    restore_archive(scratch_archive, tmp_path / "kernels.mkv", progress=False)
    assert seen == [2, None]  # plain torch: pinned to the record; cpu_kernels: any count
    assert torch.get_num_threads() == threads  # and put back


def test_a_restore_that_cannot_match_the_record_warns_in_one_line(caplog):
    cpu = torch.device("cpu")
    here = restore_backend()
    assert warn_if_backend_differs({"restore_backend": here}, cpu, "a.archive") is True
    assert warn_if_backend_differs({}, cpu, "old.archive") is True  # archives from before the record
    other = {"restore_backend": {**here, "torch": "1.0.0", "cpu_capability": "NO AVX"}}
    with caplog.at_level(logging.WARNING):
        assert warn_if_backend_differs(other, cpu, "a.archive") is False
        assert warn_if_backend_differs(other, torch.device("cuda"), "a.archive") is True  # CPU only
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("a.archive: restoring with torch ") and "(archive: 1.0.0)" in lines[0]


# ------------------------------------------------------------------------------------------ finding 8
def _model_member(archive: Path) -> tuple[dict, int]:
    """(storage summary, bytes) of an archive's model member."""
    from basicvsr_archival.archival.container import verify_archive

    report = verify_archive(archive)
    storage = report.manifest["model"]["storage"]
    return storage, next(m["bytes"] for m in report.members.values() if m["role"] == "model")


def test_tensors_still_at_their_seeded_init_are_stored_by_reference(scratch_job):
    ref, ref_bytes = _model_member(scratch_job["archive"])  # tiny_ci: from scratch, int8
    full, full_bytes = _model_member(_repackage(scratch_job, "full.archive", reference_init=False))
    rec = ref["init_reference"]
    # frozen SPyNet and deformable alignment: 102 of 176 tensors, 1,583,858 of 1,668,765 parameters
    assert sorted(rec["sha256"]) == ["generator.deform_align", "generator.spynet"]
    assert rec["tensors"] == 102 and rec["params"] == 1_583_858 and ref["num_params"] == 1_668_765
    assert rec["seed"] == 0 and rec["torch"] == torch.__version__.split("+")[0]
    assert ref["full_tensors"] == 176 - 102 and ref["stored_params"] == 1_668_765 - 1_583_858
    assert "init_reference" not in full and full["stored_params"] == 1_668_765
    assert ref_bytes < 0.1 * full_bytes  # measured 6.4% (86,928 vs 1,358,520 B at 640x272)


def test_by_reference_restores_the_same_frames_as_full_weights(scratch_job, tmp_path):
    ref = _repackage(scratch_job, "ref32.archive", dtype="fp32")
    full = _repackage(scratch_job, "full32.archive", dtype="fp32", reference_init=False)
    assert _model_member(ref)[1] < 0.1 * _model_member(full)[1]
    a = restore_archive(ref, tmp_path / "ref.mkv", progress=False)
    b = restore_archive(full, tmp_path / "full.mkv", progress=False)
    assert a.num_frames == b.num_frames == 6
    assert a.output.read_bytes() == b.output.read_bytes()  # bit-identical restores


@pytest.mark.parametrize("change", ["hash", "seed"])
def test_a_different_initialisation_is_one_error_line(scratch_archive, tmp_path, capsys, change):
    import importlib.util
    import json
    import shutil

    from basicvsr_archival.archival.package import MANIFEST_NAME, dump_manifest
    from basicvsr_archival.utils.cli import run_cli

    bad = tmp_path / "bad.archive"
    shutil.copytree(scratch_archive, bad)
    manifest = json.loads((bad / MANIFEST_NAME).read_text())
    rec = manifest["model"]["storage"]["init_reference"]
    if change == "hash":  # the init regenerated by another torch version would not match this hash
        rec["sha256"]["generator.spynet"] = "0" * 64
    else:  # another seed: every referenced module differs
        rec["seed"] = 1
    (bad / MANIFEST_NAME).write_bytes(dump_manifest(manifest))  # a valid manifest, self hash included
    spec = importlib.util.spec_from_file_location("tool_restore", REPO / "tools" / "restore.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    capsys.readouterr()
    assert run_cli(tool.main, [str(bad), "-o", str(tmp_path / "out.mkv"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seeded initialisation regenerated here" in err[0]
    names = "generator.spynet" if change == "hash" else "generator.deform_align, generator.spynet"
    assert f"differs from the archive's in {names};" in err[0]
    assert not (tmp_path / "out.mkv").exists()
