"""Archive package: model storage round trips, atomic writing, verification and base-checkpoint lookup."""

from __future__ import annotations

import importlib.util
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from basicvsr_archival.archival import container, package
from basicvsr_archival.archival.container import verify_archive, write_archive
from basicvsr_archival.archival.finetune import build_restorer
from basicvsr_archival.archival.model_storage import (
    StorageSettings,
    decode_model,
    encode_model,
    find_base_checkpoint,
)
from basicvsr_archival.archival.package import (
    ArchiveCorruptError,
    ArchiveError,
    ArchiveExistsError,
    ArchiveFormatError,
    BaseCheckpointError,
    sha256_file,
)

TINY = dict(
    type="BasicVSR",
    generator=dict(type="BasicVSRPlusPlus", mid_channels=8, num_blocks=1, upscale_factor=2),
    pixel_loss=dict(type="CharbonnierLoss"),
)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def states() -> tuple[dict, dict]:
    """(base, fine-tuned) state dicts of the tiny restorer: the fine-tuned one changes only some tensors."""
    base = build_restorer(TINY, seed=0).state_dict()
    tuned = {k: v.clone() for k, v in base.items()}
    gen = torch.Generator().manual_seed(1)
    for k in tuned:
        if k.startswith(("generator.conv_hr", "generator.upsample1", "generator.conv_last")):
            tuned[k] = tuned[k] + 1e-3 * torch.randn(tuned[k].shape, generator=gen)
    return base, tuned


def _archive(tmp: Path, name: str = "a", tar: bool = False, payload: bytes = b"model-bytes" * 50) -> Path:
    """A small archive with an LR member (arbitrary bytes) and a model member."""
    lr = tmp / "lr_src.mp4"
    lr.write_bytes(bytes(range(256)) * 20)
    out = tmp / (name + (".tar" if tar else ""))
    roles = {"lr.mp4": "lr_bitstream", "model.pt.xz": "model"}
    manifest = {"source": {"name": "src.mp4", "sha256": "0" * 64}, "settings": {"x": 1.5}, "note": "ünïcode"}
    return write_archive(out, {"lr.mp4": lr}, {"model.pt.xz": payload}, roles, manifest)


def _flip(path: Path, offset: int) -> None:
    """Invert the bits of one byte of ``path``."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------ model storage
def test_full_fp32_round_trip_is_exact(states):
    _, tuned = states
    data, summary = encode_model(tuned, StorageSettings(mode="full", dtype="fp32", compression="zlib"))
    out = decode_model(data, "zlib")
    assert summary["mode"] == "full" and summary["stored_params"] == summary["num_params"]
    assert all(torch.equal(out[k], tuned[k]) for k in tuned)


@pytest.mark.parametrize("dtype, tol", [("fp16", 2e-6), ("int8", 1 / 254), ("fp32", 0.0)])
def test_delta_round_trip(states, dtype, tol):
    """Deltas come back within the dtype's rounding (int8: half a step of max|delta| / 127)."""
    base, tuned = states
    data, summary = encode_model(tuned, StorageSettings(mode="delta", dtype=dtype), base, "ab" * 32)
    out = decode_model(data, "lzma", base)
    assert set(out) == set(tuned)
    changed = [k for k in tuned if not torch.equal(tuned[k], base[k])]
    assert summary["delta_tensors"] == len(changed) and summary["full_tensors"] == 0
    assert summary["unchanged_tensors"] == len(tuned) - len(changed)
    for k in tuned:
        if k in changed:
            step = float((tuned[k] - base[k]).abs().max()) if dtype == "int8" else 1.0
            assert float((out[k] - tuned[k]).abs().max()) <= tol * step + 1e-7, k
        else:
            assert torch.equal(out[k], base[k]), k  # untouched tensors come back bit-exact from the base


def test_delta_is_much_smaller_than_full(states):
    base, tuned = states
    full, _ = encode_model(tuned, StorageSettings(mode="full", dtype="fp16"))
    delta, _ = encode_model(tuned, StorageSettings(mode="delta", dtype="int8"), base, "ab" * 32)
    nothing, s = encode_model(base, StorageSettings(mode="delta"), base, "ab" * 32)
    assert len(delta) * 10 < len(full)
    assert s["stored_params"] == 0 and len(nothing) < 20_000


def test_delta_needs_base_and_auto_mode(states):
    _, tuned = states
    with pytest.raises(ArchiveError, match="needs a base_checkpoint"):
        encode_model(tuned, StorageSettings(mode="delta"))
    _, summary = encode_model(tuned, StorageSettings(mode="auto", compression="none"))
    assert summary["mode"] == "full"
    data, _ = encode_model(tuned, StorageSettings(mode="delta"), tuned, "cd" * 32)
    with pytest.raises(BaseCheckpointError, match="needs its base"):
        decode_model(data, "lzma", None)


def test_invalid_storage_settings():
    with pytest.raises(ArchiveError, match=r"storage\.dtype"):
        StorageSettings(dtype="fp8")
    with pytest.raises(ArchiveError, match="unknown storage setting"):
        StorageSettings.from_dict({"mode": "full", "bogus": 1})


# ------------------------------------------------------------------------------------------ writing + verify
@pytest.mark.parametrize("tar", [False, True])
def test_write_and_verify(tmp_path, tar):
    out = _archive(tmp_path, tar=tar)
    report = verify_archive(out)
    m = report.manifest
    assert m["format"] == package.FORMAT_NAME and m["format_version"] == package.FORMAT_VERSION
    assert set(m["members"]) == {"lr.mp4", "model.pt.xz"}
    assert m["members"]["lr.mp4"]["sha256"] == sha256_file(tmp_path / "lr_src.mp4")
    if not tar:
        on_disk = sum(p.stat().st_size for p in out.iterdir())
        assert m["bytes"]["total"] == on_disk
        assert m["bytes"]["manifest"] == (out / "manifest.json").stat().st_size
    assert not list(tmp_path.glob("*.tmp-*"))  # nothing temporary left behind
    assert "OK" in report.summary()


def test_every_byte_of_the_manifest_is_protected(tmp_path):
    out = _archive(tmp_path)
    manifest = out / "manifest.json"
    original = manifest.read_bytes()
    for i in range(len(original)):
        for mask in (0x01, 0x20):  # bit flips, including ones that keep the JSON valid (case, digits)
            data = bytearray(original)
            data[i] ^= mask
            manifest.write_bytes(bytes(data))
            with pytest.raises(ArchiveError):
                verify_archive(out)
    manifest.write_bytes(original)
    verify_archive(out)


@pytest.mark.parametrize("member", ["lr.mp4", "model.pt.xz"])
@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_flipped_byte_in_a_member_is_detected(tmp_path, member, where):
    out = _archive(tmp_path)
    size = (out / member).stat().st_size
    _flip(out / member, int(where * size) if where >= 0 else size - 1)
    with pytest.raises(ArchiveCorruptError, match=f"{member} is corrupted"):
        verify_archive(out)


def test_truncated_missing_and_extra_checks(tmp_path):
    out = _archive(tmp_path)
    data = (out / "model.pt.xz").read_bytes()
    (out / "model.pt.xz").write_bytes(data[:-7])
    with pytest.raises(
        ArchiveCorruptError, match=r"model.pt.xz is truncated \(\d+ bytes, manifest says \d+\)"
    ):
        verify_archive(out)
    (out / "model.pt.xz").unlink()
    with pytest.raises(ArchiveCorruptError, match=r"model\.pt\.xz is missing"):
        verify_archive(out)
    (out / "manifest.json").unlink()
    with pytest.raises(ArchiveCorruptError, match="incomplete or not an archive"):
        verify_archive(out)
    with pytest.raises(ArchiveError, match="no such archive"):
        verify_archive(tmp_path / "nope")


def test_unknown_format_version(tmp_path):
    out = _archive(tmp_path)
    m = json.loads((out / "manifest.json").read_text())
    m["format_version"] = 99
    (out / "manifest.json").write_bytes(package.dump_manifest(m))
    with pytest.raises(ArchiveFormatError, match="unknown archive format version 99"):
        verify_archive(out)
    m["format_version"], m["format"] = 1, "something-else"
    (out / "manifest.json").write_bytes(package.dump_manifest(m))
    with pytest.raises(ArchiveFormatError, match="not a basicvsr-archival archive"):
        verify_archive(out)


def test_tar_corruption_is_detected(tmp_path):
    out = _archive(tmp_path, tar=True)
    data = out.read_bytes()
    with tarfile.open(out) as tar:
        offset = tar.getmember("model.pt.xz").offset_data
    flipped = tmp_path / "flipped.tar"
    flipped.write_bytes(data[: offset + 3] + bytes([data[offset + 3] ^ 0xFF]) + data[offset + 4 :])
    with pytest.raises(ArchiveCorruptError, match=r"model\.pt\.xz is corrupted"):
        verify_archive(flipped)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(data[: offset + 100])
    with pytest.raises(ArchiveCorruptError):
        verify_archive(truncated)


def test_interrupted_write_leaves_nothing_complete(tmp_path, monkeypatch):
    def crash(tmp: Path, out: Path) -> None:
        assert (tmp / "manifest.json").is_file() or tmp.suffix == ".partial"  # everything was written
        raise RuntimeError("power cut")

    monkeypatch.setattr(container, "_publish", crash)
    for tar in (False, True):
        with pytest.raises(RuntimeError, match="power cut"):
            _archive(tmp_path, tar=tar)
        assert not (tmp_path / ("a.tar" if tar else "a")).exists()
        assert not list(tmp_path.glob("a*.tmp-*"))


def test_unfinished_build_is_not_accepted(tmp_path):
    out = _archive(tmp_path)
    leftover = tmp_path / "b.tmp-1234abcd"
    shutil.copytree(out, leftover)
    with pytest.raises(ArchiveCorruptError, match="unfinished archive build"):
        verify_archive(leftover)


def test_never_overwrites(tmp_path):
    out = _archive(tmp_path)
    with pytest.raises(ArchiveExistsError, match="already exists"):
        _archive(tmp_path)
    src = tmp_path / "lr_src.mp4"
    with pytest.raises(ArchiveExistsError, match="input"):
        write_archive(src, {"lr.mp4": src}, {}, {"lr.mp4": "lr_bitstream"}, {})
    assert verify_archive(out)


# ------------------------------------------------------------------------------------------ base lookup
def test_find_base_checkpoint(tmp_path, monkeypatch, states):
    base, tuned = states
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "ckpts"
    folder.mkdir()
    ckpt = folder / "tiny_base.pth"
    torch.save({"state_dict": base}, ckpt)
    info = {"name": "tiny_base.pth", "sha256": sha256_file(ckpt)}
    assert find_base_checkpoint(info, [folder]) == ckpt
    assert find_base_checkpoint(info, [ckpt]) == ckpt
    by_hash = tmp_path / "chkpts" / f"{info['sha256']}.pth"  # ./chkpts is searched by default
    by_hash.parent.mkdir()
    shutil.copy(ckpt, by_hash)
    assert find_base_checkpoint(info).resolve() == by_hash.resolve()
    by_hash.unlink()
    with pytest.raises(
        BaseCheckpointError, match=r"base checkpoint tiny_base.pth \(sha256 [0-9a-f]{16}\.\.\.\) not found"
    ):
        find_base_checkpoint(info, [tmp_path / "elsewhere"])
    other = tmp_path / "other" / "tiny_base.pth"
    other.parent.mkdir()
    torch.save({"state_dict": tuned}, other)  # same name, other weights
    with pytest.raises(BaseCheckpointError, match="base checkpoint mismatch"):
        find_base_checkpoint(info, [other.parent])


def test_verify_cli_one_line_error(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("verify_tool", REPO / "tools" / "verify_archive.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    from basicvsr_archival.utils.cli import run_cli

    out = _archive(tmp_path)
    assert run_cli(tool.main, [str(out)]) == 0
    assert "OK" in capsys.readouterr().out
    _flip(out / "lr.mp4", 10)
    assert run_cli(tool.main, [str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error:") and "lr.mp4 is corrupted" in err
    assert "Traceback" not in err
