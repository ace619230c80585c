"""The archive format: its errors (``errors.py``), SHA-256 hashing and the self-checking ``manifest.json``.

An archive (written and read by :mod:`.container`) holds the LR bitstream, the (delta) SR model
(:mod:`.model_storage`) and ``manifest.json``: format version, SHA-256 + bytes of every member and of
the source video, source properties, every setting used, fine-tuning stats and timings.

The manifest protects itself: its file must be exactly the canonical JSON serialisation of its content
(so any changed byte is seen) and it carries ``manifest_sha256``, the SHA-256 of that serialisation
without the field. A delta model names its base checkpoint by SHA-256; restoring looks the base up
by name or hash and refuses a file with another hash. A model trained from scratch stores the
tensors fine-tuning changed; the others are regenerated from the recorded seed at restore and
checked against a SHA-256 per module (``model.storage.init_reference``), since torch does not
promise the same initialisation across versions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from basicvsr_archival.errors import (  # noqa: F401  (archive errors, re-exported for archival/*)
    ArchiveCorruptError,
    ArchiveError,
    ArchiveExistsError,
    ArchiveFormatError,
    BaseCheckpointError,
)

PathLike = str | os.PathLike

FORMAT_NAME = "basicvsr-archival"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST_NAME = "manifest.json"
CHUNK = 1 << 20  # bytes read at a time


# ------------------------------------------------------------------------------------------ hashing
def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_stream(f: IO[bytes]) -> tuple[str, int]:
    """Hex SHA-256 and byte count of a readable binary stream."""
    h, n = hashlib.sha256(), 0
    for block in iter(lambda: f.read(CHUNK), b""):
        h.update(block)
        n += len(block)
    return h.hexdigest(), n


# ------------------------------------------------------------------------------------------ manifest
def to_jsonable(obj: Any) -> Any:
    """``obj`` with only JSON types: non-finite floats -> None, Fraction/Path -> str, tuples -> lists."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return to_jsonable(obj.item())
    return str(obj)


def _canonical(obj: Mapping[str, Any]) -> bytes:
    """The one serialisation of a manifest: sorted keys, 1-space indent, UTF-8, final newline."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode()


def dump_manifest(manifest: Mapping[str, Any]) -> bytes:
    """Final manifest bytes: sets ``bytes.manifest`` / ``bytes.total`` (a fixed point) and the self hash."""
    body = {k: v for k, v in to_jsonable(manifest).items() if k != "manifest_sha256"}
    sizes = dict(body.get("bytes", {}))
    members = int(sizes.get("members", 0))
    size = 0
    for _ in range(10):  # the size depends on its own digits: iterate until stable
        sizes.update(manifest=size, total=members + size)
        body["bytes"] = dict(sizes)
        digest = hashlib.sha256(_canonical(body)).hexdigest()
        data = _canonical({**body, "manifest_sha256": digest})
        if len(data) == size:
            return data
        size = len(data)
    raise ArchiveError("manifest size did not converge")  # pragma: no cover


def build_manifest(manifest: Mapping[str, Any], members: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Manifest bytes of an archive holding ``members`` (name -> entry): format, version and bytes set."""
    full = dict(manifest)
    full.update(format=FORMAT_NAME, format_version=FORMAT_VERSION, members=dict(members))
    full["bytes"] = {"members": sum(int(m["bytes"]) for m in members.values())}
    return dump_manifest(full)


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """Parse and check manifest bytes: format, version, canonical form and self hash."""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveCorruptError(f"{where}: manifest.json is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ArchiveFormatError(f"{where}: not a {FORMAT_NAME} archive manifest")
    version = manifest.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise ArchiveFormatError(
            f"{where}: unknown archive format version {version!r} "
            f"(this tool reads {list(SUPPORTED_VERSIONS)})"
        )
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    digest = hashlib.sha256(_canonical(body)).hexdigest()
    if manifest.get("manifest_sha256") != digest or _canonical(manifest) != data:
        raise ArchiveCorruptError(f"{where}: manifest.json is corrupted (its checksum does not match)")
    if not isinstance(manifest.get("members"), dict) or not manifest["members"]:
        raise ArchiveCorruptError(f"{where}: manifest lists no members")
    return manifest


def member_entry(path: PathLike, role: str) -> dict[str, Any]:
    """Manifest entry of a written member: role, bytes and SHA-256 of the file on disk."""
    p = Path(path)
    return {"role": role, "bytes": p.stat().st_size, "sha256": sha256_file(p)}


def member_of(manifest: Mapping[str, Any], role: str, where: str) -> str:
    """Name of the (single) member with ``role``."""
    names = [n for n, m in manifest["members"].items() if m.get("role") == role]
    if len(names) != 1:
        raise ArchiveCorruptError(
            f"{where}: manifest has {len(names)} members with role {role!r}, expected 1"
        )
    return names[0]
