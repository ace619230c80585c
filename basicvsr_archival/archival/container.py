"""The archive container: LR bitstream + (delta) SR model + ``manifest.json``, written atomically, verified.

Layout of an archive (a directory, or the same members in one uncompressed ``.tar``)::

    ARCHIVE/
        lr.mp4            the downscaled, encoded video (what :func:`codec.encode_lr` wrote)
        model.pt.xz       the SR weights: full, or the delta from a base checkpoint; fp32/fp16/int8; xz;
                          tensors still at a from-scratch run's seeded init only listed (hashed)
        manifest.json     the manifest (:mod:`.package`), written last

Writing: members go into ``ARCHIVE.tmp-<random>`` beside the target, the manifest is written last and
the directory is then renamed onto ``ARCHIVE``; an exception removes the temporary directory, and a
hard kill leaves only a ``*.tmp-*`` directory, never something at ``ARCHIVE``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .package import (
    CHUNK,
    FORMAT_NAME,
    MANIFEST_NAME,
    ArchiveCorruptError,
    ArchiveError,
    ArchiveExistsError,
    PathLike,
    build_manifest,
    member_entry,
    parse_manifest,
    sha256_stream,
)


# ------------------------------------------------------------------------------------------ writing
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
        data = build_manifest(manifest, members)
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
                digest, size = sha256_stream(fh)
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
                    digest, size = sha256_stream(fh)
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
                        shutil.copyfileobj(fh, dst, CHUNK)
        except (tarfile.TarError, EOFError) as exc:
            raise ArchiveCorruptError(f"{p}: not a readable archive tar ({exc})") from None
        manifest = (
            report.manifest if report else parse_manifest((Path(tmp) / MANIFEST_NAME).read_bytes(), str(p))
        )
        yield manifest, Path(tmp)
