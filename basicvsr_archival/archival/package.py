"""The archive package: LR bitstream + (delta) SR model + ``manifest.json``, written atomically and verified.

Layout of an archive (a directory, or the same members in one uncompressed ``.tar``)::

    ARCHIVE/
        lr.mp4            the downscaled, encoded video (what :func:`codec.encode_lr` wrote)
        model.pt.xz       the SR weights: full, or the delta from a base checkpoint; fp32/fp16/int8; xz;
                          tensors still at a from-scratch run's seeded init only listed (hashed)
        manifest.json     format version, SHA-256 + bytes of every member and of the source video, source
                          properties, every setting used, fine-tuning stats and timings (written last)

Writing: members go into ``ARCHIVE.tmp-<random>`` beside the target, the manifest is written last and
the directory is then renamed onto ``ARCHIVE``; an exception removes the temporary directory, and a
hard kill leaves only a ``*.tmp-*`` directory, never something at ``ARCHIVE``.

The manifest protects itself: its file must be exactly the canonical JSON serialisation of its content
(so any changed byte is seen) and it carries ``manifest_sha256``, the SHA-256 of that serialisation
without the field. A delta model names its base checkpoint by SHA-256; restoring looks the base up
by name or hash and refuses a file with another hash. A model trained from scratch stores the
tensors fine-tuning changed; the others are regenerated from the recorded seed at restore and
checked against a SHA-256 per module (``model.storage.init_reference``), since torch does not
promise the same initialisation across versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from basicvsr_archival.errors import (
    ArchiveCorruptError,
    ArchiveError,
    ArchiveExistsError,
    ArchiveFormatError,
    BaseCheckpointError,
)
from basicvsr_archival.utils import env

PathLike = str | os.PathLike

FORMAT_NAME = "basicvsr-archival"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20
ENV_CHKPTS = "BASICVSR_ARCHIVAL_CHKPTS"  # extra folders searched for base checkpoints (os.pathsep list)


# ------------------------------------------------------------------------------------------ hashing
def sha256_file(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _sha256_stream(f: IO[bytes]) -> tuple[str, int]:
    """Hex SHA-256 and byte count of a readable binary stream."""
    h, n = hashlib.sha256(), 0
    for block in iter(lambda: f.read(_CHUNK), b""):
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


# ------------------------------------------------------------------------------------------ writing
def member_entry(path: PathLike, role: str) -> dict[str, Any]:
    """Manifest entry of a written member: role, bytes and SHA-256 of the file on disk."""
    p = Path(path)
    return {"role": role, "bytes": p.stat().st_size, "sha256": sha256_file(p)}


def _fsync(path: Path) -> None:
    """Flush a file or directory to disk (best effort on platforms without directory fsync)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished temporary archive onto its final name (the commit point)."""
    os.rename(tmp, out)
    _fsync(out.parent)


def is_tar_path(path: PathLike) -> bool:
    """True if ``path`` names a single-file (.tar) archive."""
    return Path(path).suffix.lower() == ".tar"


def write_archive(
    out: PathLike,
    files: Mapping[str, PathLike],
    blobs: Mapping[str, bytes],
    roles: Mapping[str, str],
    manifest: Mapping[str, Any],
    forbid: Iterable[PathLike] = (),
    tmp: PathLike | None = None,
) -> Path:
    """Write an archive directory (or ``.tar``) atomically and return its path.

    ``files`` are copied in, ``blobs`` written; their sizes and hashes (of what is on disk) go into
    ``manifest['members']``, the manifest is written last, then the temporary directory ``tmp``
    (default ``OUT.tmp-<random>``) is renamed onto ``out``; for a ``.tar`` the members are packed into
    a temporary tar which is renamed. An existing ``out`` or one of ``forbid`` is refused.
    """
    out = Path(out)
    for src in [*files.values(), *forbid]:
        if out.resolve() == Path(src).resolve():
            raise ArchiveExistsError(f"{out}: refusing to overwrite an input file")
    if out.exists():
        raise ArchiveExistsError(f"{out}: already exists; archives are never overwritten")
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tmp) if tmp is not None else out.with_name(f"{out.name}.tmp-{secrets.token_hex(4)}")
    build.mkdir()
    try:
        members: dict[str, Any] = {}
        for name, src in files.items():
            shutil.copyfile(src, build / name)
            _fsync(build / name)
            members[name] = member_entry(build / name, roles[name])
        for name, data in blobs.items():
            (build / name).write_bytes(data)
            _fsync(build / name)
            members[name] = member_entry(build / name, roles[name])
        full = dict(manifest)
        full.update(format=FORMAT_NAME, format_version=FORMAT_VERSION, members=members)
        full["bytes"] = {"members": sum(m["bytes"] for m in members.values())}
        data = dump_manifest(full)
        (build / MANIFEST_NAME).write_bytes(data)  # written last: a directory without it is unfinished
        _fsync(build / MANIFEST_NAME)
        _fsync(build)
        if is_tar_path(out):
            tar_tmp = build / f".{out.name}.partial"
            with tarfile.open(tar_tmp, "w", format=tarfile.PAX_FORMAT) as tar:
                for name in [*members, MANIFEST_NAME]:
                    tar.add(build / name, arcname=name, recursive=False)
            _fsync(tar_tmp)
            _publish(tar_tmp, out)
            shutil.rmtree(build, ignore_errors=True)
        else:
            _publish(build, out)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return out


# ------------------------------------------------------------------------------------------ reading
@dataclass
class VerifyReport:
    """Result of :func:`verify_archive`: the manifest and the checked members."""

    path: Path
    manifest: dict[str, Any]
    members: dict[str, dict[str, Any]]
    total_bytes: int

    def summary(self) -> str:
        """One line for the CLI."""
        parts = ", ".join(f"{n} {m['bytes']} B" for n, m in self.members.items())
        return (
            f"{self.path}: OK (format {FORMAT_NAME} v{self.manifest['format_version']}; {parts}; "
            f"total {self.total_bytes} B)"
        )


def _safe_member_name(name: str, where: str) -> str:
    """Member names are plain file names (no folders, no '..')."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise ArchiveCorruptError(f"{where}: invalid member name {name!r}")
    return name


def _check_member(where: str, name: str, entry: Mapping[str, Any], digest: str, size: int) -> None:
    """Compare a member's size and hash with its manifest entry."""
    if size != entry.get("bytes"):
        what = "truncated" if size < int(entry.get("bytes", 0)) else "has the wrong size"
        raise ArchiveCorruptError(
            f"{where}: member {name} is {what} ({size} bytes, manifest says {entry.get('bytes')})"
        )
    if digest != entry.get("sha256"):
        raise ArchiveCorruptError(f"{where}: member {name} is corrupted (SHA-256 mismatch)")


def _tar_members(tar: tarfile.TarFile, where: str) -> dict[str, tarfile.TarInfo]:
    """Regular-file members of an archive tar by name."""
    found = {}
    for info in tar.getmembers():
        if not info.isfile():
            raise ArchiveCorruptError(f"{where}: unexpected tar entry {info.name!r}")
        found[_safe_member_name(info.name, where)] = info
    return found


def verify_archive(path: PathLike) -> VerifyReport:
    """Check an archive: format + version, manifest integrity, every member present with its size and hash."""
    p = Path(path)
    where = str(p)
    if not p.exists():
        raise ArchiveError(f"{p}: no such archive")
    if ".tmp-" in p.name:
        raise ArchiveCorruptError(f"{p}: an unfinished archive build (temporary name); re-run with --resume")
    if p.is_dir():
        mpath = p / MANIFEST_NAME
        if not mpath.is_file():
            raise ArchiveCorruptError(f"{p}: incomplete or not an archive (no {MANIFEST_NAME})")
        manifest = parse_manifest(mpath.read_bytes(), where)
        for name, entry in manifest["members"].items():
            f = p / _safe_member_name(name, where)
            if not f.is_file():
                raise ArchiveCorruptError(f"{where}: member {name} is missing")
            with open(f, "rb") as fh:
                digest, size = _sha256_stream(fh)
            _check_member(where, name, entry, digest, size)
    else:
        try:
            with tarfile.open(p, "r:") as tar:
                found = _tar_members(tar, where)
                if MANIFEST_NAME not in found:
                    raise ArchiveCorruptError(f"{p}: incomplete or not an archive (no {MANIFEST_NAME})")
                fh = tar.extractfile(found[MANIFEST_NAME])
                assert fh is not None
                manifest = parse_manifest(fh.read(), where)
                for name, entry in manifest["members"].items():
                    if name not in found:
                        raise ArchiveCorruptError(f"{where}: member {name} is missing")
                    fh = tar.extractfile(found[name])
                    assert fh is not None
                    digest, size = _sha256_stream(fh)
                    _check_member(where, name, entry, digest, size)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveCorruptError(
                f"{p}: not a readable archive tar (truncated or corrupted: {exc})"
            ) from None
    members = manifest["members"]
    return VerifyReport(p, manifest, members, int(manifest["bytes"]["total"]))


@contextlib.contextmanager
def open_archive(path: PathLike, verify: bool = True) -> Iterator[tuple[dict[str, Any], Path]]:
    """Yield ``(manifest, folder holding the members)``; a ``.tar`` is extracted to a temporary folder."""
    p = Path(path)
    report = verify_archive(p) if verify else None
    if p.is_dir():
        manifest = report.manifest if report else parse_manifest((p / MANIFEST_NAME).read_bytes(), str(p))
        yield manifest, p
        return
    with tempfile.TemporaryDirectory(prefix="archive-") as tmp:
        try:
            with tarfile.open(p, "r:") as tar:
                found = _tar_members(tar, str(p))
                for name, info in found.items():
                    fh = tar.extractfile(info)
                    assert fh is not None
                    with open(Path(tmp) / name, "wb") as dst:
                        shutil.copyfileobj(fh, dst, _CHUNK)
        except (tarfile.TarError, EOFError) as exc:
            raise ArchiveCorruptError(f"{p}: not a readable archive tar ({exc})") from None
        manifest = (
            report.manifest if report else parse_manifest((Path(tmp) / MANIFEST_NAME).read_bytes(), str(p))
        )
        yield manifest, Path(tmp)


def member_of(manifest: Mapping[str, Any], role: str, where: str) -> str:
    """Name of the (single) member with ``role``."""
    names = [n for n, m in manifest["members"].items() if m.get("role") == role]
    if len(names) != 1:
        raise ArchiveCorruptError(
            f"{where}: manifest has {len(names)} members with role {role!r}, expected 1"
        )
    return names[0]


# ------------------------------------------------------------------------------------------ base checkpoints
def base_search_dirs(extra: Iterable[PathLike] = ()) -> list[Path]:
    """Where base checkpoints are looked for: ``extra``, ``$BASICVSR_ARCHIVAL_CHKPTS``, then ``./chkpts``."""
    dirs = [Path(e) for e in extra]
    dirs += [Path(d) for d in (env.read(ENV_CHKPTS) or "").split(os.pathsep) if d]
    dirs.append(Path("chkpts"))
    return dirs


def find_base_checkpoint(base: Mapping[str, Any], search: Iterable[PathLike] = ()) -> Path:
    """Path of the base checkpoint described by ``base`` (``name``, ``sha256``) in ``search`` + defaults.

    Each entry of ``search`` is a checkpoint file or a folder; in a folder the recorded file name and
    ``<sha256>.pth`` are tried. The file must have the recorded SHA-256; a same-named file with another
    hash raises :class:`BaseCheckpointError` (mismatch) if no matching file is found elsewhere.
    """
    want, name = str(base["sha256"]), str(base.get("name") or "")
    candidates: list[Path] = []
    for entry in base_search_dirs(search):
        if entry.is_file():
            candidates.append(entry)
        elif entry.is_dir():
            candidates += [entry / n for n in (name, f"{want}.pth") if n and (entry / n).is_file()]
    mismatched = []
    for cand in dict.fromkeys(candidates):
        if sha256_file(cand) == want:
            return cand
        mismatched.append(cand)
    if mismatched:
        raise BaseCheckpointError(
            f"{mismatched[0]}: base checkpoint mismatch: SHA-256 differs from the archive's base "
            f"{name or ''} (sha256 {want[:16]}...)"
        )
    looked = ", ".join(str(d) for d in base_search_dirs(search))
    raise BaseCheckpointError(
        f"base checkpoint {name or '?'} (sha256 {want[:16]}...) not found in {looked}; "
        "pass --base-checkpoint PATH"
    )
