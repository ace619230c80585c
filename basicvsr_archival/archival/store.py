"""A store of many archived videos: content-addressed objects plus a SQLite catalog, under one lock.

Layout::

    STORE/
        catalog.sqlite       the catalog (:mod:`.catalog`): videos, clusters, objects, tasks, settings
        objects/ab/abcd...   every LR stream, audio stream, model, base model and manifest, named by
                             the SHA-256 of its bytes (read-only files)
        tmp/                 objects being written (temp + fsync + rename; gc removes leftovers)
        store.lock           held (``flock``) by the one process that writes the store

A video's manifest is an archive manifest (:mod:`.package`) whose members are objects: the member
``sha256`` is the object's name, so a store video restores through the archive restore core
(:func:`restore_video` links the objects into a folder that is an archive). A manifest holds no
timestamps or timings of the store (those are catalog columns), so equal inputs give equal hashes;
a model shared by N videos, a duplicate video or a base model is one object.

An object is referenced by a video's or cluster's ``manifest_sha``, a cluster's ``model_sha``, the
``base_model`` setting, or from such a manifest: its members' ``sha256``, its
``model.base_checkpoint.sha256`` and any ``{"object": sha}`` entry. :meth:`Store.gc` deletes the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from basicvsr_archival.utils.lock import LockHeldError, exclusive_lock, lock_holder

from .catalog import CATALOG_NAME, Catalog, StoreError, StoreFormatError
from .container import _fsync, open_archive
from .model_storage import find_base_checkpoint
from .package import (
    CHUNK,
    MANIFEST_NAME,
    ArchiveCorruptError,
    PathLike,
    build_manifest,
    dump_manifest,
    member_of,
    parse_manifest,
    sha256_file,
)

if TYPE_CHECKING:
    from .restore import RestoreResult

OBJECTS_DIR = "objects"
TMP_DIR = "tmp"
LOCK_NAME = "store.lock"
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
KIND_OF_ROLE = {"lr_bitstream": "lr", "model": "model", "audio": "audio"}
IMPORTED = "imported"  # cluster method of imported single-video archives


class StoreLockedError(StoreError):
    """Another process holds the store's lock."""


class StoreCorruptError(StoreError, ArchiveCorruptError):
    """An object is missing or does not match its SHA-256, or the catalog is inconsistent."""


def is_store(path: PathLike) -> bool:
    """True if ``path`` is a store directory (holds ``catalog.sqlite``)."""
    return (Path(path) / CATALOG_NAME).is_file()


def manifest_refs(manifest: Mapping[str, Any]) -> set[str]:
    """Object hashes a manifest refers to: members, base checkpoint, nested ``{"object": sha}``."""
    members = manifest.get("members")
    entries = members.values() if isinstance(members, Mapping) else []
    refs = {str(m["sha256"]) for m in entries if isinstance(m, Mapping) and "sha256" in m}
    model = manifest.get("model")
    base = model.get("base_checkpoint") if isinstance(model, Mapping) else None
    if isinstance(base, Mapping) and base.get("sha256"):
        refs.add(str(base["sha256"]))

    def walk(node: Any) -> None:
        """Add every nested ``{"object": sha}``."""
        if isinstance(node, Mapping):
            if isinstance(node.get("object"), str) and SHA_RE.match(node["object"]):
                refs.add(node["object"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(manifest)
    return refs


class Store(Catalog):
    """An open store (a context manager). Use :meth:`open`; writes need ``lock=True``."""

    def __init__(self, root: Path, create: bool, lock: bool, stack: contextlib.ExitStack) -> None:
        """Open the catalog (the lock is already held by ``stack``); see :meth:`open`."""
        super().__init__(root / CATALOG_NAME, create=create, readonly=not lock)
        self.root = root
        self.objects_dir = root / OBJECTS_DIR
        self.writable = lock
        self._stack = stack

    @classmethod
    def open(cls, root: PathLike, create: bool = False, lock: bool = True) -> Store:
        """Open (``create``: make if absent) the store at ``root``.

        With ``lock`` the store is held exclusively (``store.lock``, ``flock``) until :meth:`close`;
        a second opener gets :class:`StoreLockedError`. Without it the catalog is opened read-only.
        """
        root = Path(root)
        if create and not lock:
            raise StoreError(f"{root}: creating a store needs the lock (lock=True)")
        if create:
            root.mkdir(parents=True, exist_ok=True)
            (root / OBJECTS_DIR).mkdir(exist_ok=True)
            (root / TMP_DIR).mkdir(exist_ok=True)
        elif not root.is_dir():
            raise StoreError(f"{root}: no such store")
        elif not is_store(root):
            raise StoreFormatError(f"{root}: not a store (no {CATALOG_NAME})")
        stack = contextlib.ExitStack()
        try:
            if lock:
                try:
                    stack.enter_context(exclusive_lock(root / LOCK_NAME, root))
                except LockHeldError:
                    pid = lock_holder(root / LOCK_NAME)
                    raise StoreLockedError(
                        f"{root}: store is in use by another run (pid {pid if pid is not None else '?'})"
                    ) from None
            fresh = create and not (root / CATALOG_NAME).exists()
            return cls(root, fresh, lock, stack)
        except BaseException:
            stack.close()
            raise

    def close(self) -> None:
        """Close the catalog and release the lock."""
        try:
            super().close()
        finally:
            self._stack.close()

    def __enter__(self) -> Store:
        """Use as ``with Store.open(root) as store:``."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the block."""
        self.close()

    def _require_writable(self) -> None:
        """Refuse writes to a store opened without the lock."""
        if not self.writable:
            raise StoreError(f"{self.root}: opened read-only (without the lock); cannot write")

    # -------------------------------------------------------------------------------- objects
    def object_path(self, sha: str) -> Path:
        """Where the object ``sha`` lives: ``objects/<sha[:2]>/<sha>``."""
        if not SHA_RE.match(sha):
            raise StoreError(f"{self.root}: {sha!r} is not a SHA-256 object name")
        return self.objects_dir / sha[:2] / sha

    def has_object(self, sha: str) -> bool:
        """True if the object is recorded and its file exists."""
        return self.object_row(sha) is not None and self.object_path(sha).is_file()

    def _commit_object(self, tmp: Path, sha: str, kind: str) -> str:
        """Rename a written temp file onto its object name (unless present) and record the row."""
        final = self.object_path(sha)
        try:
            if final.is_file():
                tmp.unlink()  # idempotent: an existing object is never rewritten
            else:
                final.parent.mkdir(exist_ok=True)
                os.chmod(tmp, 0o444)
                os.rename(tmp, final)
                _fsync(final.parent)
        finally:
            tmp.unlink(missing_ok=True)
        self.add_object_row(sha, kind, final.stat().st_size)
        return sha

    def _temp_file(self) -> Path:
        """A fresh temporary file name in ``tmp/``."""
        (self.root / TMP_DIR).mkdir(exist_ok=True)
        return self.root / TMP_DIR / f"obj-{secrets.token_hex(8)}"

    def put_bytes(self, data: bytes, kind: str) -> str:
        """Store ``data`` as an object of ``kind`` (temp + fsync + rename, then the row); returns its sha."""
        self._require_writable()
        sha = hashlib.sha256(data).hexdigest()
        if self.has_object(sha):
            return sha
        tmp = self._temp_file()
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return self._commit_object(tmp, sha, kind)

    def put_file(self, path: PathLike, kind: str) -> str:
        """Store the file at ``path`` as an object of ``kind`` (hashed while copied); returns its sha."""
        self._require_writable()
        tmp = self._temp_file()
        h = hashlib.sha256()
        try:
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                for block in iter(lambda: src.read(CHUNK), b""):
                    h.update(block)
                    dst.write(block)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._commit_object(tmp, h.hexdigest(), kind)

    def put_manifest(self, manifest: Mapping[str, Any]) -> str:
        """Store a manifest as canonical JSON (``package.dump_manifest``); returns its object sha."""
        return self.put_bytes(dump_manifest(manifest), "manifest")

    def put_archive_manifest(
        self,
        files: Mapping[str, PathLike],
        roles: Mapping[str, str],
        manifest: Mapping[str, Any],
        kinds: Mapping[str, str] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """The store's ``container.write_archive``: members become objects, then the manifest.

        ``files`` maps member names to files (an existing object, e.g. a shared model, is not
        rewritten); ``roles`` gives each member's role. Returns ``(manifest sha, manifest)``.
        """
        members = {}
        for name, path in files.items():
            kind = (kinds or {}).get(name) or KIND_OF_ROLE.get(roles[name], roles[name])
            sha = self.put_file(path, kind)
            members[name] = {
                "role": roles[name],
                "bytes": self.object_path(sha).stat().st_size,
                "sha256": sha,
            }
        data = build_manifest(manifest, members)
        sha = self.put_bytes(data, "manifest")
        return sha, parse_manifest(data, str(self.object_path(sha)))

    def read_object(self, sha: str, where: str = "") -> bytes:
        """The bytes of an object, checked against its name."""
        path = self.object_path(sha)
        label = f"{where}: " if where else ""
        if not path.is_file():
            raise StoreCorruptError(f"{self.root}: {label}object {sha[:16]}... is missing ({path})")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha:
            raise StoreCorruptError(f"{path}: {label}object is corrupted (SHA-256 does not match its name)")
        return data

    def check_object(self, sha: str, where: str = "") -> Path:
        """The path of an object whose content matches its name (else :class:`StoreCorruptError`)."""
        path = self.object_path(sha)
        label = f"{where}: " if where else ""
        if not path.is_file():
            raise StoreCorruptError(f"{self.root}: {label}object {sha[:16]}... is missing ({path})")
        if sha256_file(path) != sha:
            raise StoreCorruptError(f"{path}: {label}object is corrupted (SHA-256 does not match its name)")
        return path

    def read_manifest(self, sha: str, where: str = "") -> dict[str, Any]:
        """An archive manifest object, hash- and format-checked."""
        return parse_manifest(self.read_object(sha, where), str(self.object_path(sha)))

    # -------------------------------------------------------------------------------- videos
    def unique_video_id(self, source_path: PathLike) -> str:
        """The file's stem (unsafe characters -> '_'), made unique in this store with -2, -3, ..."""
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(source_path).stem).strip(".") or "video"
        taken = {v["id"] for v in self.videos()}
        ident, n = stem, 1
        while ident in taken:
            n += 1
            ident = f"{stem}-{n}"
        return ident

    def video_or_error(self, video_id: str) -> dict[str, Any]:
        """The video row, or a one-line error listing the store's ids."""
        row = self.video(video_id)
        if row is None:
            ids = [v["id"] for v in self.videos()]
            shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
            raise StoreError(f"{self.root}: no video {video_id!r} in the store (videos: {shown or 'none'})")
        return row

    def remove_video(self, video_id: str, drop_empty_cluster: bool = True) -> None:
        """Remove a video from the catalog (and its cluster when now empty); :meth:`gc` frees its objects."""
        self._require_writable()
        row = self.video_or_error(video_id)
        self.delete_video_row(video_id)
        cid = row["cluster_id"]
        if drop_empty_cluster and cid is not None and not self.cluster_videos(cid):
            self.delete_cluster_row(cid)

    # -------------------------------------------------------------------------------- references, gc
    def roots(self) -> dict[str, list[str]]:
        """Objects named by catalog rows: sha -> who names it ('video X manifest', ...)."""
        roots: dict[str, list[str]] = {}
        for v in self.videos():
            if v["manifest_sha"]:
                roots.setdefault(v["manifest_sha"], []).append(f"video {v['id']} manifest")
        for c in self.clusters():
            for col in ("model_sha", "manifest_sha"):
                if c[col]:
                    roots.setdefault(c[col], []).append(f"cluster {c['id']} {col[:-4]}")
        base = self.setting("base_model")
        if isinstance(base, str) and SHA_RE.match(base):
            roots.setdefault(base, []).append("setting base_model")
        return roots

    def references(self) -> dict[str, list[str]]:
        """Every referenced object: the roots and what their manifests name (unreadable -> error)."""
        refs = {sha: list(who) for sha, who in self.roots().items()}
        for sha, who in list(refs.items()):
            if not any(w.endswith("manifest") for w in who):
                continue
            try:
                manifest = json.loads(self.read_object(sha, who[0]))
            except (ValueError, UnicodeDecodeError):
                raise StoreCorruptError(f"{self.object_path(sha)}: {who[0]} is not valid JSON") from None
            for ref in manifest_refs(manifest):
                refs.setdefault(ref, []).append(f"{who[0]} ({sha[:12]})")
        return refs

    def stored_shas(self) -> set[str]:
        """Object names present in ``objects/`` or in the catalog."""
        on_disk = {p.name for p in self.objects_dir.glob("*/*") if SHA_RE.match(p.name)}
        return on_disk | {r["sha"] for r in self.object_rows()}

    def gc(self) -> list[str]:
        """Delete unreferenced objects (files and rows) and leftover temp files; returns their shas.

        Refuses (:class:`StoreCorruptError`) when a referenced manifest is missing or corrupted, so
        a damaged store never loses what that manifest names.
        """
        self._require_writable()
        refs = self.references()
        removed = sorted(self.stored_shas() - set(refs))
        for sha in removed:
            self.object_path(sha).unlink(missing_ok=True)
            self.delete_object_row(sha)
        for leftover in (self.root / TMP_DIR).glob("*"):
            leftover.unlink(missing_ok=True)
        return removed


# ------------------------------------------------------------------------------------------ import
def import_archive(
    store: Store,
    archive: PathLike,
    base_checkpoint: PathLike | list[PathLike] | None = None,
    video_id: str | None = None,
) -> str:
    """Import a single-video archive (directory or .tar): members and manifest become objects.

    The archive is verified first; its manifest bytes are kept as they are. A delta model's base
    checkpoint (found like a restore finds it) becomes a ``base_model`` object, so the store is
    self-contained. The video joins the 'imported' cluster of its model (one per model object).
    Returns the new video id (``video_id`` or the source file's stem, made unique).
    """
    store._require_writable()
    with open_archive(archive) as (manifest, folder):
        where = str(archive)
        base = manifest["model"].get("base_checkpoint")
        if base and not store.has_object(str(base["sha256"])):
            search = [base_checkpoint] if isinstance(base_checkpoint, str | os.PathLike) else base_checkpoint
            store.put_file(find_base_checkpoint(base, search or []), "base_model")
        for name, entry in manifest["members"].items():
            role = entry["role"]
            sha = store.put_file(folder / name, KIND_OF_ROLE.get(role, role))
            if sha != entry["sha256"]:  # pragma: no cover - open_archive verified it
                raise StoreCorruptError(f"{where}: member {name} changed while it was imported")
        manifest_sha = store.put_bytes((folder / MANIFEST_NAME).read_bytes(), "manifest")
    model_sha = manifest["members"][member_of(manifest, "model", where)]["sha256"]
    cluster_id = f"{IMPORTED}-{model_sha[:12]}"
    if store.cluster(cluster_id) is None:
        store.add_cluster(cluster_id, method=IMPORTED, model_sha=model_sha, state="done")
    source = manifest["source"]
    vid = video_id or store.unique_video_id(source.get("name") or Path(archive).stem)
    store.add_video(
        vid,
        source=source.get("name"),
        source_sha256=source.get("sha256"),
        cluster_id=cluster_id,
        manifest_sha=manifest_sha,
        state="done",
        bytes=int(manifest["bytes"]["total"]),
        info={"imported_from": str(archive)},
    )
    return vid


# ------------------------------------------------------------------------------------------ restore
@contextlib.contextmanager
def materialise_video(store: Store, video_id: str) -> Iterator[tuple[Path, list[Path]]]:
    """Yield ``(archive folder, base checkpoints)``: a store video as an archive directory.

    Every object the manifest names is hash-checked (a flipped byte or a missing object is a
    one-line :class:`StoreCorruptError` naming the video), then symlinked into a temporary folder
    under its member name beside ``manifest.json``.
    """
    import tempfile

    row = store.video_or_error(video_id)
    where = f"video {video_id}"
    if row["state"] != "done" or not row["manifest_sha"]:
        raise StoreError(f"{store.root}: {where} is not archived yet (state {row['state']})")
    manifest = store.read_manifest(row["manifest_sha"], f"{where} manifest")
    bases = []
    base = manifest["model"].get("base_checkpoint")
    if base and store.object_row(str(base["sha256"])) is not None:
        bases.append(store.check_object(str(base["sha256"]), f"{where} base checkpoint"))
    with tempfile.TemporaryDirectory(prefix="store-restore-") as tmp:
        folder = Path(tmp) / video_id
        folder.mkdir()
        for name, entry in manifest["members"].items():
            path = store.check_object(str(entry["sha256"]), f"{where} member {name}")
            os.symlink(path.resolve(), folder / name)
        shutil.copyfile(store.object_path(row["manifest_sha"]), folder / MANIFEST_NAME)
        yield folder, bases


def restore_video(store: Store, video_id: str, output: PathLike, **kwargs: Any) -> RestoreResult:
    """Restore a store video by id through :func:`.restore.restore_archive` (same keyword arguments).

    The store's base model object is searched first for a delta model (``base_checkpoint`` adds
    more places). Returns the :class:`.restore.RestoreResult`.
    """
    from .restore import restore_archive

    extra = kwargs.pop("base_checkpoint", None)
    extra = [extra] if isinstance(extra, str | os.PathLike) else list(extra or [])
    with materialise_video(store, video_id) as (folder, bases):
        return restore_archive(folder, output, base_checkpoint=[*bases, *extra], **kwargs)


def verify(store: Store | PathLike):
    """Check a store (see :func:`.store_report.verify`); returns a :class:`.store_report.StoreReport`."""
    from .store_report import verify as _verify

    return _verify(store)


def catalog_json(store: Store) -> dict[str, Any]:
    """The catalog as JSON-ready data (see :func:`.store_report.catalog_json`)."""
    from .store_report import catalog_json as _catalog_json

    return _catalog_json(store)


def open_store_or_error(root: PathLike, lock: bool = True) -> Store:
    """Open an existing store for a tool (``StoreFormatError`` if ``root`` is not one)."""
    if not is_store(root):
        raise StoreFormatError(f"{root}: not a store (no {CATALOG_NAME})")
    return Store.open(root, lock=lock)
