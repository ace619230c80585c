"""The store's catalog: one SQLite file (``STORE/catalog.sqlite``) of videos, clusters, objects and jobs.

Tables (schema version 1, recorded in ``meta``):

* ``videos``: one row per archived video (its id, source, cluster, manifest object, state, bytes);
* ``clusters``: a group of videos sharing one model object (``model_sha``), how it was formed;
* ``assignments``: why a video went to its cluster (descriptor, distance, reason);
* ``objects``: every content-addressed object in ``objects/`` (SHA-256, kind, size);
* ``tasks``: job states (attempts, worker pid, engine, seconds, error);
* ``settings``: the settings a run used (JSON values); ``meta``: schema version, package version.

Rows are plain dicts; a ``*_json`` column is decoded and returned without the suffix
(``info``, ``reason``, ``settings``, ``descriptor``). Timestamps (UTC, ISO 8601) and timings live
here only, never in the content-addressed manifests. Only the process holding the store lock writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .package import ArchiveError, PathLike, to_jsonable

SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = (1,)
CATALOG_NAME = "catalog.sqlite"

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE objects(sha TEXT PRIMARY KEY, kind TEXT NOT NULL, size INTEGER NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE videos(id TEXT PRIMARY KEY, source TEXT, source_sha256 TEXT, label TEXT, cluster_id TEXT,
    manifest_sha TEXT, state TEXT NOT NULL, bytes INTEGER, info_json TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE clusters(id TEXT PRIMARY KEY, method TEXT, model_sha TEXT, manifest_sha TEXT,
    video_count INTEGER NOT NULL DEFAULT 0, reason_json TEXT, settings_json TEXT, state TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE assignments(video_id TEXT PRIMARY KEY, cluster_id TEXT NOT NULL, descriptor_json TEXT,
    distance REAL, reason_json TEXT);
CREATE TABLE tasks(name TEXT PRIMARY KEY, kind TEXT, state TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    worker_pid INTEGER, engine TEXT, seconds REAL, error TEXT, updated_at TEXT NOT NULL);
CREATE TABLE settings(key TEXT PRIMARY KEY, value_json TEXT NOT NULL);
"""

VIDEO_FIELDS = ("source", "source_sha256", "label", "cluster_id", "manifest_sha", "state", "bytes", "info")
CLUSTER_FIELDS = ("method", "model_sha", "manifest_sha", "reason", "settings", "state")


class StoreError(ArchiveError):
    """A store cannot be used as asked (missing, in use, unknown video); one line naming the store."""


class StoreFormatError(StoreError):
    """Not a store, or a catalog schema version this code cannot read."""


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _dumps(value: Any) -> str | None:
    """JSON text of ``value`` (None stays NULL), sorted keys."""
    return None if value is None else json.dumps(to_jsonable(value), sort_keys=True)


def _row(cur: sqlite3.Cursor, raw: tuple) -> dict[str, Any]:
    """A row as a dict; ``*_json`` columns decoded under the name without the suffix."""
    out: dict[str, Any] = {}
    for (name, *_), value in zip(cur.description, raw, strict=True):
        if name.endswith("_json"):
            out[name[: -len("_json")]] = None if value is None else json.loads(value)
        else:
            out[name] = value
    return out


def _columns(fields: Mapping[str, Any], allowed: Iterable[str], table: str) -> dict[str, Any]:
    """SQL column values of API ``fields`` (JSON-encoded where the column is ``*_json``)."""
    allowed = tuple(allowed)
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ValueError(f"{table}: unknown field(s) {unknown}; known: {list(allowed)}")
    json_keys = {"info", "reason", "settings", "descriptor"}
    return {
        (f"{k}_json" if k in json_keys else k): (_dumps(v) if k in json_keys else v)
        for k, v in fields.items()
    }


class Catalog:
    """Row-level access to ``catalog.sqlite`` (``Store`` builds on it; use ``Store.open``)."""

    def __init__(self, path: PathLike, create: bool = False, readonly: bool = False) -> None:
        """Open (or create) the catalog file and check its schema version."""
        self.catalog_path = Path(path)
        where = self.catalog_path.parent
        if not create and not self.catalog_path.is_file():
            raise StoreFormatError(f"{where}: not a store (no {CATALOG_NAME})")
        uri = f"file:{self.catalog_path}?mode={'ro' if readonly else 'rwc'}"
        try:
            self.db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            if create:
                self._create()
            version = self.meta().get("schema_version")
        except sqlite3.DatabaseError as exc:
            raise StoreFormatError(f"{self.catalog_path}: not a readable store catalog ({exc})") from None
        if version is None or int(version) not in SUPPORTED_SCHEMAS:
            raise StoreFormatError(
                f"{where}: unknown store schema version {version!r} "
                f"(this tool reads {list(SUPPORTED_SCHEMAS)})"
            )
        self.schema_version = int(version)

    def _create(self) -> None:
        """Create the tables and the meta rows in an empty catalog."""
        from basicvsr_archival import __version__

        with self.db:
            self.db.execute("BEGIN")
            for stmt in filter(str.strip, SCHEMA.split(";")):
                self.db.execute(stmt)
            meta = {
                "schema_version": str(SCHEMA_VERSION),
                "created_at": utc_now(),
                "package_version": __version__,
            }
            self.db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    # -------------------------------------------------------------------------------- generic rows
    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a query as dicts."""
        cur = self.db.execute(sql, tuple(args))
        return [_row(cur, raw) for raw in cur.fetchall()]

    def _one(self, sql: str, args: Iterable[Any] = ()) -> dict[str, Any] | None:
        """The first row of a query, or None."""
        rows = self._all(sql, args)
        return rows[0] if rows else None

    def _write(self, sql: str, args: Iterable[Any] = ()) -> int:
        """Run one statement in its own transaction; returns the changed row count."""
        with self.db:
            return self.db.execute(sql, tuple(args)).rowcount

    def _update(self, table: str, key: str, ident: str, cols: Mapping[str, Any]) -> None:
        """``UPDATE table SET cols WHERE key = ident`` (a missing row is an error)."""
        if not cols:
            return
        sets = ", ".join(f"{c} = ?" for c in cols)
        if self._write(f"UPDATE {table} SET {sets} WHERE {key} = ?", [*cols.values(), ident]) != 1:
            raise StoreError(f"{self.catalog_path.parent}: no {table[:-1]} {ident!r} in the catalog")

    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict (schema_version, created_at, package_version)."""
        return {r["key"]: r["value"] for r in self._all("SELECT key, value FROM meta")}

    # -------------------------------------------------------------------------------- objects
    def add_object_row(self, sha: str, kind: str, size: int) -> None:
        """Record an object (no-op if already recorded)."""
        sql = "INSERT OR IGNORE INTO objects(sha, kind, size, created_at) VALUES (?, ?, ?, ?)"
        self._write(sql, (sha, kind, int(size), utc_now()))

    def object_rows(self) -> list[dict[str, Any]]:
        """Every object row (sha, kind, size, created_at), by sha."""
        return self._all("SELECT * FROM objects ORDER BY sha")

    def object_row(self, sha: str) -> dict[str, Any] | None:
        """The row of one object, or None."""
        return self._one("SELECT * FROM objects WHERE sha = ?", [sha])

    def delete_object_row(self, sha: str) -> None:
        """Forget an object."""
        self._write("DELETE FROM objects WHERE sha = ?", [sha])

    # -------------------------------------------------------------------------------- videos
    def add_video(self, id: str, **fields: Any) -> dict[str, Any]:
        """Insert a video row (fields: see ``VIDEO_FIELDS``; state defaults to 'pending'); returns it."""
        self._insert("videos", "video", id, _columns({"state": "pending", **fields}, VIDEO_FIELDS, "videos"))
        self._recount(fields.get("cluster_id"))
        return self.video(id)  # type: ignore[return-value]

    def update_video(self, id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of a video row (and its cluster's video count); returns the row."""
        old = self.video(id)
        cols = _columns(fields, VIDEO_FIELDS, "videos")
        self._update("videos", "id", id, {**cols, "updated_at": utc_now()})
        if old and "cluster_id" in fields:
            self._recount(old["cluster_id"])
            self._recount(fields["cluster_id"])
        return self.video(id)  # type: ignore[return-value]

    def _insert(self, table: str, what: str, id: str, cols: dict[str, Any]) -> None:
        """Insert a row with its id and timestamps; an existing id is one line naming it."""
        now = utc_now()
        cols = {**cols, "id": id, "created_at": now, "updated_at": now}
        sql = f"INSERT INTO {table}({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        try:
            self._write(sql, cols.values())
        except sqlite3.IntegrityError:
            raise StoreError(f"{self.catalog_path.parent}: {what} {id!r} already exists") from None

    def video(self, id: str) -> dict[str, Any] | None:
        """One video row, or None."""
        return self._one("SELECT * FROM videos WHERE id = ?", [id])

    def videos(self) -> list[dict[str, Any]]:
        """Every video row, by id."""
        return self._all("SELECT * FROM videos ORDER BY id")

    def delete_video_row(self, id: str) -> None:
        """Remove a video row and its assignment (objects stay until gc)."""
        old = self.video(id)
        if old is None:
            raise StoreError(f"{self.catalog_path.parent}: no video {id!r} in the catalog")
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM videos WHERE id = ?", [id])
            self.db.execute("DELETE FROM assignments WHERE video_id = ?", [id])
        self._recount(old["cluster_id"])

    # -------------------------------------------------------------------------------- clusters
    def add_cluster(self, id: str, **fields: Any) -> dict[str, Any]:
        """Insert a cluster row (fields: see ``CLUSTER_FIELDS``; state defaults to 'pending')."""
        cols = _columns({"state": "pending", **fields}, CLUSTER_FIELDS, "clusters")
        self._insert("clusters", "cluster", id, cols)
        self._recount(id)
        return self.cluster(id)  # type: ignore[return-value]

    def update_cluster(self, id: str, **fields: Any) -> dict[str, Any]:
        """Change fields of a cluster row; returns it."""
        cols = _columns(fields, CLUSTER_FIELDS, "clusters")
        self._update("clusters", "id", id, {**cols, "updated_at": utc_now()})
        return self.cluster(id)  # type: ignore[return-value]

    def cluster(self, id: str) -> dict[str, Any] | None:
        """One cluster row, or None."""
        return self._one("SELECT * FROM clusters WHERE id = ?", [id])

    def clusters(self) -> list[dict[str, Any]]:
        """Every cluster row, by id."""
        return self._all("SELECT * FROM clusters ORDER BY id")

    def delete_cluster_row(self, id: str) -> None:
        """Remove a cluster row (its videos must have gone first)."""
        self._write("DELETE FROM clusters WHERE id = ?", [id])

    def cluster_videos(self, id: str) -> list[str]:
        """Ids of the videos in a cluster, sorted."""
        return [r["id"] for r in self._all("SELECT id FROM videos WHERE cluster_id = ? ORDER BY id", [id])]

    def _recount(self, cluster_id: str | None) -> None:
        """Set a cluster's ``video_count`` from the videos table."""
        if cluster_id is not None:
            count = "SELECT COUNT(*) FROM videos WHERE cluster_id = ?"
            sql = f"UPDATE clusters SET video_count = ({count}) WHERE id = ?"
            self._write(sql, [cluster_id, cluster_id])

    # -------------------------------------------------------------------------------- assignments
    def set_assignment(
        self,
        video_id: str,
        cluster_id: str,
        descriptor: Mapping[str, Any] | None = None,
        distance: float | None = None,
        reason: Any = None,
    ) -> None:
        """Record (or replace) why ``video_id`` went to ``cluster_id``."""
        sql = "INSERT OR REPLACE INTO assignments VALUES (?, ?, ?, ?, ?)"
        self._write(sql, (video_id, cluster_id, _dumps(descriptor), distance, _dumps(reason)))

    def assignment(self, video_id: str) -> dict[str, Any] | None:
        """One assignment row, or None."""
        return self._one("SELECT * FROM assignments WHERE video_id = ?", [video_id])

    def assignments(self) -> list[dict[str, Any]]:
        """Every assignment row, by video id."""
        return self._all("SELECT * FROM assignments ORDER BY video_id")

    # -------------------------------------------------------------------------------- tasks
    def record_task(
        self,
        name: str,
        kind: str,
        state: str,
        worker_pid: int | None = None,
        engine: str | None = None,
        seconds: float | None = None,
        error: str | None = None,
        attempts: int | None = None,
    ) -> dict[str, Any]:
        """Record a task's state; 'started' adds one attempt, ``attempts`` (an engine's count) that many."""
        bump = attempts if attempts is not None else (1 if state == "started" else 0)
        sql = (
            "INSERT INTO tasks(name, kind, state, attempts, worker_pid, engine, seconds, error, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, "
            "state = excluded.state, attempts = tasks.attempts + ?, worker_pid = excluded.worker_pid, "
            "engine = excluded.engine, seconds = excluded.seconds, error = excluded.error, "
            "updated_at = excluded.updated_at"
        )
        self._write(sql, (name, kind, state, bump, worker_pid, engine, seconds, error, utc_now(), bump))
        return self.task(name)  # type: ignore[return-value]

    def task(self, name: str) -> dict[str, Any] | None:
        """One task row, or None."""
        return self._one("SELECT * FROM tasks WHERE name = ?", [name])

    def videos_by_cluster(self, state: str = "prepared") -> dict[str, list[dict[str, Any]]]:
        """Videos in ``state`` that have a cluster, grouped by cluster id (catalog order)."""
        members: dict[str, list[dict[str, Any]]] = {}
        for v in self.videos():
            if v["cluster_id"] and v["state"] == state:
                members.setdefault(v["cluster_id"], []).append(v)
        return members

    def compute_seconds(self, cluster_id: str | None = None, video_id: str | None = None) -> float:
        """Seconds of a cluster's training tasks (fine-tune, every size of a size ladder, SR-aware refine)
        and of a video's SR-aware encode."""
        names, prefix = {f"sr_aware:{video_id}"} if video_id else set(), None
        if cluster_id is not None:
            names |= {f"finetune:{cluster_id}", f"sr_aware_refine:{cluster_id}"}
            prefix = f"finetune:{cluster_id}/"
        rows = [t for t in self.tasks() if t["name"] in names or (prefix and t["name"].startswith(prefix))]
        return float(sum(t["seconds"] or 0.0 for t in rows))

    def tasks(self) -> list[dict[str, Any]]:
        """Every task row, by name."""
        return self._all("SELECT * FROM tasks ORDER BY name")

    # -------------------------------------------------------------------------------- settings
    def set_setting(self, key: str, value: Any) -> None:
        """Record a setting (any JSON value)."""
        self._write("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, _dumps(value) or "null"))

    def setting(self, key: str, default: Any = None) -> Any:
        """A recorded setting, or ``default``."""
        row = self._one("SELECT value_json FROM settings WHERE key = ?", [key])
        return default if row is None else row["value"]

    def settings(self) -> dict[str, Any]:
        """Every setting as a dict."""
        return {r["key"]: r["value"] for r in self._all("SELECT * FROM settings ORDER BY key")}
