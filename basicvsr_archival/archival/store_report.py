"""Checking a store (:func:`verify`) and describing it (:func:`catalog_json`, :func:`catalog_lines`).

:func:`verify` hashes every object file, checks every reference resolves (video and cluster
manifests, their members and base checkpoints, cluster models), that no object is an orphan and
that the catalog agrees with itself (object rows vs files, cluster video counts, assignments).
It collects every problem; :meth:`StoreReport.raise_for_problems` turns them into one line.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .package import ArchiveError, PathLike, parse_manifest, sha256_file
from .store import SHA_RE, TMP_DIR, Store, StoreCorruptError, manifest_refs, open_store_or_error


@dataclass
class StoreReport:
    """What :func:`verify` found: counts, and every problem as one line."""

    root: Path
    schema_version: int
    videos: int
    clusters: int
    objects: int
    bytes: int
    temp_files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """One line for the CLI."""
        state = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        return (
            f"{self.root}: {state} (store schema v{self.schema_version}; {self.videos} videos, "
            f"{self.clusters} clusters, {self.objects} objects, {self.bytes} B)"
        )

    def raise_for_problems(self) -> StoreReport:
        """Raise :class:`StoreCorruptError` with the first problem (and how many more); else self."""
        if self.problems:
            more = f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
            raise StoreCorruptError(f"{self.problems[0]}{more}")
        return self


def verify(store: Store | PathLike) -> StoreReport:
    """Check a store (an open :class:`Store`, or a path opened here with the lock)."""
    if isinstance(store, Store):
        return _verify_open(store)
    with open_store_or_error(store, lock=True) as opened:
        return _verify_open(opened)


def _verify_open(store: Store) -> StoreReport:
    """:func:`verify` on an open store."""
    problems: list[str] = []
    present, good = _check_files(store, problems)
    rows = {r["sha"]: r for r in store.object_rows()}
    for sha, row in rows.items():
        path = store.object_path(sha)
        if sha not in present:
            problems.append(f"{path}: object ({row['kind']}) is missing")
        elif present[sha] != row["size"]:
            problems.append(f"{path}: object has {present[sha]} bytes, the catalog says {row['size']}")
    for sha in sorted(set(present) - set(rows)):
        problems.append(f"{store.object_path(sha)}: object is not in the catalog")
    referenced = _check_references(store, good, problems)
    for sha in sorted(set(present) - referenced):
        problems.append(f"{store.object_path(sha)}: orphan object, nothing refers to it (run gc)")
    _check_catalog(store, problems)
    temps = sum(1 for _ in (store.root / TMP_DIR).glob("*"))
    clusters, videos = store.clusters(), store.videos()
    total = sum(present.values())
    return StoreReport(
        store.root, store.schema_version, len(videos), len(clusters), len(present), total, temps, problems
    )


def _check_files(store: Store, problems: list[str]) -> tuple[dict[str, int], set[str]]:
    """Hash every file under ``objects/``: ``({sha: size} present, {sha} whose content matches)``."""
    present: dict[str, int] = {}
    good: set[str] = set()
    for path in sorted(store.objects_dir.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(store.root)
        if not SHA_RE.match(path.name) or path.parent.name != path.name[:2] or len(rel.parts) != 3:
            problems.append(f"{path}: unexpected file in objects/ (not an object name)")
            continue
        present[path.name] = path.stat().st_size
        if sha256_file(path) == path.name:
            good.add(path.name)
        else:
            problems.append(f"{path}: object is corrupted (SHA-256 does not match its name)")
    return present, good


def _check_references(store: Store, good: set[str], problems: list[str]) -> set[str]:
    """Every reference resolves to a good object; returns the referenced set."""
    roots = store.roots()
    referenced = set(roots)
    for sha, who in roots.items():
        if sha not in good:
            problems.append(f"{store.root}: {who[0]}: object {sha[:16]}... is missing or corrupted")
    clusters = {c["id"]: c for c in store.clusters()}
    for v in store.videos():
        if v["manifest_sha"] and v["manifest_sha"] in good:
            referenced |= _check_video_manifest(store, v, clusters.get(v["cluster_id"]), good, problems)
    for c in clusters.values():
        sha = c["manifest_sha"]
        if sha and sha in good:
            refs = manifest_refs(json.loads(store.object_path(sha).read_bytes()))
            referenced |= refs
            for ref in sorted(refs - good):
                problems.append(f"{store.root}: cluster {c['id']} manifest: object {ref[:16]}... is missing")
    return referenced


def _check_video_manifest(
    store: Store, video: dict[str, Any], cluster: dict[str, Any] | None, good: set[str], problems: list[str]
) -> set[str]:
    """A video's manifest parses and its members, base checkpoint and cluster model resolve."""
    where = f"{store.root}: video {video['id']}"
    try:
        manifest = parse_manifest(store.object_path(video["manifest_sha"]).read_bytes(), f"{where} manifest")
    except ArchiveError as exc:
        problems.append(str(exc))
        return set()
    for name, entry in manifest["members"].items():
        sha = str(entry.get("sha256"))
        if sha not in good:
            problems.append(f"{where}: member {name} (object {sha[:16]}...) is missing or corrupted")
        elif store.object_path(sha).stat().st_size != entry.get("bytes"):
            problems.append(f"{where}: member {name} has another size than its manifest says")
    base = manifest["model"].get("base_checkpoint")
    if base and str(base.get("sha256")) not in good:
        problems.append(f"{where}: base checkpoint {base.get('name')} is not in the store")
    models = [m["sha256"] for m in manifest["members"].values() if m.get("role") == "model"]
    if cluster is not None and cluster["model_sha"] and models != [cluster["model_sha"]]:
        problems.append(f"{where}: its model is not its cluster {cluster['id']}'s model object")
    return manifest_refs(manifest)


def _check_catalog(store: Store, problems: list[str]) -> None:
    """Rows agree: clusters exist, video counts match, assignments name existing rows, states complete."""
    clusters = {c["id"]: c for c in store.clusters()}
    videos = {v["id"]: v for v in store.videos()}
    counts = Counter(v["cluster_id"] for v in videos.values())
    for v in videos.values():
        if v["cluster_id"] is not None and v["cluster_id"] not in clusters:
            problems.append(f"{store.root}: video {v['id']} names a missing cluster {v['cluster_id']}")
        if v["state"] == "done" and not v["manifest_sha"]:
            problems.append(f"{store.root}: video {v['id']} is done but has no manifest")
    for c in clusters.values():
        if c["video_count"] != counts.get(c["id"], 0):
            problems.append(
                f"{store.root}: cluster {c['id']} counts {c['video_count']} videos, the catalog has "
                f"{counts.get(c['id'], 0)}"
            )
        if c["state"] == "done" and not c["model_sha"]:
            problems.append(f"{store.root}: cluster {c['id']} is done but has no model")
    for a in store.assignments():
        v = videos.get(a["video_id"])
        if v is None or a["cluster_id"] not in clusters or v["cluster_id"] != a["cluster_id"]:
            problems.append(
                f"{store.root}: assignment of {a['video_id']} to {a['cluster_id']} does not match"
            )


# ------------------------------------------------------------------------------------------ describe
def _members(store: Store, manifest_sha: str | None) -> dict[str, Any] | None:
    """``{name: {role, bytes, object}}`` of a video manifest (None when unreadable)."""
    if not manifest_sha:
        return None
    try:
        manifest = json.loads(store.object_path(manifest_sha).read_bytes())
        items = manifest["members"].items()
        return {n: {"role": m["role"], "bytes": m["bytes"], "object": m["sha256"]} for n, m in items}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def catalog_json(store: Store) -> dict[str, Any]:
    """The catalog as JSON-ready data: ``{"store", "videos", "clusters", "assignments", "objects", ...}``.

    Videos: id, source, cluster, bytes, state, manifest (sha), members (bytes per member and its
    object), label, info, timestamps. Clusters: id, videos (ids), model (sha of its model object),
    model_bytes, method, manifest, state, reason, settings, timestamps.
    """
    objects = store.object_rows()
    sizes = {o["sha"]: o["size"] for o in objects}
    videos = [
        {
            "id": v["id"],
            "source": v["source"],
            "source_sha256": v["source_sha256"],
            "label": v["label"],
            "cluster": v["cluster_id"],
            "bytes": v["bytes"],
            "state": v["state"],
            "manifest": v["manifest_sha"],
            "members": _members(store, v["manifest_sha"]),
            "info": v["info"],
            "created_at": v["created_at"],
            "updated_at": v["updated_at"],
        }
        for v in store.videos()
    ]
    clusters = [
        {
            "id": c["id"],
            "method": c["method"],
            "videos": store.cluster_videos(c["id"]),
            "model": c["model_sha"],
            "model_bytes": sizes.get(c["model_sha"]),
            "manifest": c["manifest_sha"],
            "state": c["state"],
            "reason": c["reason"],
            "settings": c["settings"],
            "created_at": c["created_at"],
            "updated_at": c["updated_at"],
        }
        for c in store.clusters()
    ]
    by_kind: dict[str, dict[str, int]] = {}
    for o in objects:
        entry = by_kind.setdefault(o["kind"], {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += o["size"]
    meta = store.meta()
    return {
        "store": {
            "schema_version": int(meta["schema_version"]),
            **{k: v for k, v in meta.items() if k != "schema_version"},
        },
        "videos": videos,
        "clusters": clusters,
        "assignments": store.assignments(),
        "objects": {"count": len(objects), "bytes": sum(sizes.values()), "by_kind": by_kind},
        "tasks": store.tasks(),
        "settings": store.settings(),
    }


def catalog_lines(data: dict[str, Any], root: PathLike) -> list[str]:
    """Human-readable lines of :func:`catalog_json` output (for ``tools/catalog.py``)."""
    objs = data["objects"]
    lines = [
        f"store {root}: schema v{data['store']['schema_version']}, {len(data['videos'])} videos, "
        f"{len(data['clusters'])} clusters, {objs['count']} objects ({objs['bytes']} B)"
    ]
    for v in data["videos"]:
        members = ", ".join(f"{n} {m['bytes']} B" for n, m in (v["members"] or {}).items()) or "-"
        lines.append(
            f"video   {v['id']}: {v['state']}, cluster {v['cluster'] or '-'}, {v['bytes'] or 0} B "
            f"({members}), source {v['source'] or '-'}"
        )
    for c in data["clusters"]:
        model = f"{c['model'][:12]} ({c['model_bytes']} B)" if c["model"] else "-"
        lines.append(
            f"cluster {c['id']}: {c['method']}, {c['state']}, {len(c['videos'])} videos "
            f"[{', '.join(c['videos'])}], model {model}"
        )
        if ladder := _ladder_line(c):
            lines.append(ladder)
    kinds = ", ".join(f"{k} {e['count']} ({e['bytes']} B)" for k, e in sorted(objs["by_kind"].items()))
    lines.append(f"objects: {kinds or 'none'}")
    return lines


def _ladder_line(cluster: dict[str, Any]) -> str | None:
    """One catalog line of a cluster's size-ladder choice (:mod:`.size_ladder`) (None without a ladder)."""
    lad = (cluster.get("settings") or {}).get("size_ladder")
    if not lad:
        return None
    sizes = ", ".join(
        f"{r['size']} {r['psnr'] if r['psnr'] is None else round(r['psnr'], 2)} dB ${r['tco_usd']:.4g}"
        for r in lad["rows"]
    )
    return f"  size ladder: {lad['chosen']} chosen [{sizes}]"
