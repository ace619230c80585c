"""The one atomic writer: complete file or untouched target, umask permissions, no temporary left."""

from __future__ import annotations

import json
import os
import stat

import pytest

from basicvsr_archival.utils.atomic import atomic_path, atomic_write_bytes, atomic_write_json


def _umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "state.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    assert target.read_text() == '{\n "a": [\n  1,\n  2\n ],\n "b": 1\n}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()  # not mkstemp's 0600
    atomic_write_bytes(target, b"xyz")
    assert target.read_bytes() == b"xyz" and os.listdir(target.parent) == ["state.json"]


def test_failed_write_leaves_the_target_and_no_temporary(tmp_path):
    target = tmp_path / "clip.mkv"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="encoder died"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".clip.") and tmp.suffix == ".mkv"
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder died")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["clip.mkv"]
    assert json.loads(atomic_write_json(tmp_path / "n.json", 1.5, default=str).read_text()) == 1.5


def test_hard_link_keeps_its_source_permissions(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"data")
    src.chmod(0o444)
    with atomic_path(tmp_path / "dst.bin") as tmp:
        os.unlink(tmp)
        os.link(src, tmp)
    assert stat.S_IMODE(src.stat().st_mode) == 0o444 and (tmp_path / "dst.bin").read_bytes() == b"data"
