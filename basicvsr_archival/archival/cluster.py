"""Which videos of a collection share one fine-tuned model (issue 14).

Methods (config section ``cluster``, :class:`ClusterSettings`):

* ``per_video``: one cluster per video (one model each, the single-video archive's behaviour);
* ``single``: one cluster for the whole collection;
* ``kmeans``: k-means on the standardised content descriptors (:mod:`.descriptors`) with ``k``
  clusters, or ``ceil(videos / max_videos_per_cluster)`` when only the cap is given; seeded k-means++
  initialisation, ``N_INIT`` restarts, the lowest inertia kept (own NumPy implementation);
* ``label``: one cluster per value of a label column of the video list (like NCS's game tags).

With ``max_videos_per_cluster``, an oversized ``kmeans`` or ``label`` cluster is split by k-means
into ``ceil(size / max)`` parts, recursively, until every part fits.

Descriptor vectors are standardised over the collection (z-score per dimension; a constant
dimension keeps std 1), then every dimension of a group (``si``, ``ti``, ``colour``, ``embedding``)
is multiplied by ``weights[group] / sqrt(group length)``: with equal weights each group carries the
same total variance whatever its length (the 16..128-long embedding does not drown SI). The scaling
is recorded (:func:`cluster_state`) so videos added later are measured the same way
(:func:`nearest_cluster`, :func:`add_to_state`).

TI's default weight is 0.25, the others 1. TI (the largest frame difference) follows the motion of
the moment more than the content: on 3 segments x 5 real sources (the ``collection_segments``
fixture) 83 % of TI's variance lay within sources (SI 1 %, mean luma 0.3 %); with TI weight 1,
k-means with k = sources grouped the segments by source in 30 of 135 trials (5 seeded tiny models x
9 subsets x 3 k-means seeds), with 0.5 in all 135 but in 105 without the embedding, with 0.25 in all
135 with or without it.

Cluster ids are deterministic: ``c000``, ``c001``, ... ordered by each cluster's first member id
(ids sorted as strings); the result does not depend on the order the videos are given in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from basicvsr_archival.archival.package import ArchiveError

METHODS = ("per_video", "single", "kmeans", "label")
DEFAULT_WEIGHTS = {"si": 1.0, "ti": 0.25, "colour": 1.0, "embedding": 1.0}
N_INIT = 10
MAX_ITER = 100
STATE_VERSION = 1


class ClusterError(ArchiveError):
    """Invalid cluster settings, descriptors, labels or cluster state."""


def _check_int(name: str, value: Any, minimum: int, optional: bool = True) -> None:
    """Raise :class:`ClusterError` unless ``value`` is an int >= ``minimum`` (or None when optional)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = f"an int >= {minimum}" + (" or None" if optional else "")
        raise ClusterError(f"cluster.{name} must be {what}, got {value!r}")


@dataclass(frozen=True)
class ClusterSettings:
    """How videos are grouped; ``max_distance`` overrides the new-cluster threshold of added videos."""

    method: str = "per_video"
    k: int | None = None
    max_videos_per_cluster: int | None = None
    seed: int = 0
    max_distance: float | None = None
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self) -> None:
        """Validate every field (one-line errors naming the key)."""
        if self.method not in METHODS:
            raise ClusterError(f"cluster.method must be one of {METHODS}, got {self.method!r}")
        _check_int("k", self.k, 1)
        _check_int("max_videos_per_cluster", self.max_videos_per_cluster, 1)
        _check_int("seed", self.seed, 0, optional=False)
        if self.k is not None and self.method != "kmeans":
            raise ClusterError(f"cluster.k is only used by method='kmeans', not {self.method!r}")
        if self.max_videos_per_cluster is not None and self.method not in ("kmeans", "label"):
            raise ClusterError(
                f"cluster.max_videos_per_cluster is only used by 'kmeans' and 'label', not {self.method!r}"
            )
        if self.method == "kmeans" and self.k is None and self.max_videos_per_cluster is None:
            raise ClusterError("cluster.k or cluster.max_videos_per_cluster is needed by method='kmeans'")
        if self.max_distance is not None and (
            isinstance(self.max_distance, bool)
            or not isinstance(self.max_distance, int | float)
            or not self.max_distance >= 0
        ):
            raise ClusterError(
                f"cluster.max_distance must be a number >= 0 or None, got {self.max_distance!r}"
            )
        weights = dict(self.weights)
        unknown = sorted(set(weights) - set(DEFAULT_WEIGHTS))
        if unknown:
            raise ClusterError(
                f"cluster.weights: unknown group(s) {unknown}; known: {sorted(DEFAULT_WEIGHTS)}"
            )
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, int | float) or not w >= 0:
                raise ClusterError(f"cluster.weights.{name} must be a number >= 0, got {w!r}")
        object.__setattr__(self, "weights", {**DEFAULT_WEIGHTS, **{n: float(w) for n, w in weights.items()}})

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> ClusterSettings:
        """Build from the config section ``cluster``; an unknown key is an error naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ClusterError(f"cluster: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(cfg))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict that :meth:`from_dict` turns back into equal settings."""
        d = asdict(self)
        d["weights"] = dict(self.weights)
        return d


@dataclass(frozen=True)
class Assignment:
    """Where one video went: its cluster, its distance to the cluster centroid, and why (JSON dict)."""

    video_id: str
    cluster_id: str
    distance: float
    reason: dict[str, Any]


@dataclass(frozen=True)
class Scaling:
    """Standardisation of descriptor vectors: ``(v - mean) / std * weight``, one entry per dimension."""

    mean: list[float]
    std: list[float]
    weight: list[float]
    groups: list[list[Any]]

    @classmethod
    def fit(
        cls, vectors: np.ndarray, groups: Sequence[Sequence[Any]], weights: Mapping[str, float]
    ) -> Scaling:
        """Z-score over the collection (constant dimensions keep std 1), groups weighted equally."""
        std = vectors.std(axis=0)
        std[std <= 1e-12] = 1.0
        per_dim = [weights[name] / math.sqrt(n) for name, n in groups for _ in range(n)]
        return cls(
            mean=[float(v) for v in vectors.mean(axis=0)],
            std=[float(v) for v in std],
            weight=per_dim,
            groups=[[name, int(n)] for name, n in groups],
        )

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Scaled copy of ``vectors`` (n, d) or (d,)."""
        return (vectors - np.asarray(self.mean)) / np.asarray(self.std) * np.asarray(self.weight)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scaling:
        """Inverse of :meth:`to_dict`."""
        return cls(list(d["mean"]), list(d["std"]), list(d["weight"]), [list(g) for g in d["groups"]])


def _vector(video_id: str, descriptor: Mapping[str, Any], groups: list[list[Any]] | None) -> np.ndarray:
    """The descriptor's ``vector`` as float64, checked against ``groups`` (None: any)."""
    if not isinstance(descriptor, Mapping) or "vector" not in descriptor or "groups" not in descriptor:
        raise ClusterError(f"{video_id}: descriptor has no 'vector'/'groups' (see compute_descriptors)")
    vec = np.asarray(descriptor["vector"], dtype=np.float64)
    got = [[name, int(n)] for name, n in descriptor["groups"]]
    if vec.ndim != 1 or sum(n for _, n in got) != vec.size or not np.isfinite(vec).all():
        raise ClusterError(f"{video_id}: descriptor vector is malformed (length {vec.size}, groups {got})")
    if groups is not None and got != groups:
        raise ClusterError(f"{video_id}: descriptor groups {got} differ from the collection's {groups}")
    return vec


def _kmeanspp(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability proportional to squared distance."""
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        d2 = ((points[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1).min(axis=1)
        total = d2.sum()
        pick = rng.integers(len(points)) if total <= 0 else rng.choice(len(points), p=d2 / total)
        centres.append(points[pick])
    return np.array(centres)


def _lloyd(points: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, float]:
    """Lloyd iterations until labels are stable; an emptied cluster takes the worst-fitted point."""
    labels = np.full(len(points), -1)
    for _ in range(MAX_ITER):
        d2 = ((points[:, None, :] - centres[None]) ** 2).sum(-1)
        new = d2.argmin(axis=1)
        fit = d2[np.arange(len(points)), new]  # each point's squared distance to its centre
        for j in range(len(centres)):
            if not (new == j).any():
                worst = int(fit.argmax())
                if fit[worst] > 0 and (new == new[worst]).sum() > 1:
                    new[worst], fit[worst] = j, 0.0
        if np.array_equal(new, labels):
            break
        labels = new
        centres = np.array(
            [points[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(len(centres))]
        )
    inertia = float(((points - centres[labels]) ** 2).sum())
    return labels, inertia


def kmeans(points: np.ndarray, k: int, seed: int, n_init: int = N_INIT) -> np.ndarray:
    """Labels (0..k-1) of seeded k-means++ / Lloyd with ``n_init`` restarts, the lowest inertia kept."""
    k = max(1, min(k, len(points)))
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(n_init):
        labels, inertia = _lloyd(points, _kmeanspp(points, k, rng))
        if best is None or inertia < best[0] - 1e-12:
            best = (inertia, labels)
    assert best is not None
    return best[1]


def _groups_of(labels: np.ndarray, members: Sequence[int]) -> list[list[int]]:
    """Member index lists per label (empty labels dropped), each sorted."""
    return [sorted(int(members[i]) for i in np.flatnonzero(labels == j)) for j in np.unique(labels)]


def split_oversized(points: np.ndarray, group: list[int], max_size: int, seed: int) -> list[list[int]]:
    """Split ``group`` (indices into ``points``) by k-means into parts of at most ``max_size``."""
    if len(group) <= max_size:
        return [group]
    parts = _groups_of(kmeans(points[group], math.ceil(len(group) / max_size), seed), group)
    if len(parts) == 1:  # identical points: k-means cannot split them, cut in order
        parts = [group[i : i + max_size] for i in range(0, len(group), max_size)]
    return [p for part in parts for p in split_oversized(points, part, max_size, seed)]


def _centroid_distances(points: np.ndarray, groups: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (one row per group) and every point's distance to its own group's centroid."""
    centroids = np.array([points[g].mean(axis=0) for g in groups])
    dist = np.zeros(len(points))
    for j, g in enumerate(groups):
        dist[g] = np.linalg.norm(points[g] - centroids[j], axis=1)
    return centroids, dist


def _label_groups(ids: list[str], labels: Mapping[str, str] | None) -> tuple[list[list[int]], list[str]]:
    """Groups of video indices per label value, and the label of each group."""
    if labels is None:
        raise ClusterError("cluster.method='label' needs a label for every video (a 'label' column)")
    by_label: dict[str, list[int]] = {}
    for i, vid in enumerate(ids):
        label = labels.get(vid)
        if label is None or str(label).strip() == "":
            raise ClusterError(f"{vid}: no label, which cluster.method='label' needs")
        by_label.setdefault(str(label), []).append(i)
    names = sorted(by_label)
    return [by_label[n] for n in names], names


def _scaled_points(
    descriptors: Mapping[str, Mapping[str, Any]], settings: ClusterSettings
) -> tuple[list[str], np.ndarray, Scaling]:
    """Sorted video ids, their scaled descriptor vectors and the scaling used."""
    if not descriptors:
        raise ClusterError("no videos to cluster")
    ids = sorted(descriptors)
    groups = [[name, int(n)] for name, n in descriptors[ids[0]].get("groups", [])]
    vectors = np.array([_vector(vid, descriptors[vid], groups) for vid in ids])
    scaling = Scaling.fit(vectors, groups, settings.weights)
    return ids, scaling.transform(vectors), scaling


def _grouping(
    ids: list[str], points: np.ndarray, settings: ClusterSettings, labels: Mapping[str, str] | None
) -> tuple[list[list[int]], list[dict[str, Any]]]:
    """Member index groups and each group's reason (before ids are given)."""
    method, cap, seed = settings.method, settings.max_videos_per_cluster, settings.seed
    if method == "per_video":
        return [[i] for i in range(len(ids))], [{"method": method} for _ in ids]
    if method == "single":
        return [list(range(len(ids)))], [{"method": method}]
    if method == "label":
        groups, names = _label_groups(ids, labels)
        base = [{"method": method, "label": n} for n in names]
    else:
        k = settings.k if settings.k is not None else math.ceil(len(ids) / cap)
        groups = _groups_of(kmeans(points, k, seed), range(len(ids)))
        base = [
            {"method": method, "k": min(k, len(ids)), "seed": seed, "kmeans_cluster": j}
            for j in range(len(groups))
        ]
    if cap is None:
        return groups, base
    out_groups, out_reasons = [], []
    for group, reason in zip(groups, base, strict=True):
        parts = split_oversized(points, group, cap, seed)
        for part in parts:
            out_groups.append(part)
            out_reasons.append({**reason, "split_from_size": len(group)} if len(parts) > 1 else reason)
    return out_groups, out_reasons


def assign_clusters(
    descriptors: Mapping[str, Mapping[str, Any]],
    settings: ClusterSettings,
    labels: Mapping[str, str] | None = None,
) -> list[Assignment]:
    """One :class:`Assignment` per video (sorted by id): cluster ``cNNN``, distance to centroid, reason."""
    ids, points, _ = _scaled_points(descriptors, settings)
    groups, reasons = _grouping(ids, points, settings, labels)
    order = sorted(range(len(groups)), key=lambda j: min(groups[j]))
    groups, reasons = [groups[j] for j in order], [reasons[j] for j in order]
    centroids, dist = _centroid_distances(points, groups)
    cluster_of = {i: j for j, g in enumerate(groups) for i in g}
    out = []
    for i, vid in enumerate(ids):
        j = cluster_of[i]
        reason = {**reasons[j], "cluster_size": len(groups[j])}
        others = [(float(np.linalg.norm(points[i] - c)), m) for m, c in enumerate(centroids) if m != j]
        if others:
            d, m = min(others)
            reason["nearest_other"] = {"cluster": f"c{m:03d}", "distance": round(d, 6)}
        out.append(Assignment(vid, f"c{j:03d}", round(float(dist[i]), 6), reason))
    return out


def _half_smallest_gap(clusters: Sequence[Mapping[str, Any]]) -> float:
    """Half the smallest distance between two cluster centroids (0 with fewer than two clusters)."""
    cents = np.array([c["centroid"] for c in clusters])
    gaps = [np.linalg.norm(cents[i] - cents[j]) for i in range(len(cents)) for j in range(i + 1, len(cents))]
    return float(min(gaps)) / 2 if gaps else 0.0


def cluster_state(
    descriptors: Mapping[str, Mapping[str, Any]],
    assignments: Sequence[Assignment],
    settings: ClusterSettings,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """JSON state for adding videos later: settings, scaling, centroids, members, distance threshold.

    The threshold is ``settings.max_distance`` if set, else the larger of the largest member-to-centroid
    distance of the first clustering and half the smallest distance between two centroids: a new
    video farther than that from every centroid is new content and starts a cluster of its own.
    """
    ids, points, scaling = _scaled_points(descriptors, settings)
    index = {vid: i for i, vid in enumerate(ids)}
    clusters: dict[str, list[str]] = {}
    for a in assignments:
        clusters.setdefault(a.cluster_id, []).append(a.video_id)
    state_clusters = []
    for cid in sorted(clusters):
        members = sorted(clusters[cid])
        centroid = points[[index[v] for v in members]].mean(axis=0)
        label = labels.get(members[0]) if (labels and settings.method == "label") else None
        state_clusters.append(
            {"id": cid, "videos": members, "centroid": [float(v) for v in centroid], "label": label}
        )
    threshold = settings.max_distance
    if threshold is None:
        threshold = max([a.distance for a in assignments] + [_half_smallest_gap(state_clusters)])
    return {
        "version": STATE_VERSION,
        "settings": settings.to_dict(),
        "scaling": scaling.to_dict(),
        "distance_threshold": float(threshold),
        "clusters": state_clusters,
    }


def nearest_cluster(
    descriptor: Mapping[str, Any], clusters_state: Mapping[str, Any], label: str | None = None
) -> tuple[str, float] | None:
    """The existing cluster a new video joins, with its distance; None means a new cluster.

    ``per_video``: always None; ``single``: the one cluster; ``label``: the cluster of ``label``
    unless full; ``kmeans``: the nearest centroid among clusters not full, None when farther than
    the state's distance threshold.
    """
    settings = ClusterSettings.from_dict(clusters_state["settings"])
    scaling = Scaling.from_dict(clusters_state["scaling"])
    point = scaling.transform(_vector("new video", descriptor, scaling.groups))
    cap = settings.max_videos_per_cluster
    open_clusters = [c for c in clusters_state["clusters"] if cap is None or len(c["videos"]) < cap]
    if settings.method == "per_video" or not open_clusters:
        return None
    if settings.method == "label":
        if label is None:
            raise ClusterError("a label is needed to add a video to a store clustered by label")
        open_clusters = [c for c in open_clusters if c["label"] == str(label)]
        if not open_clusters:
            return None
    dists = [(float(np.linalg.norm(point - np.asarray(c["centroid"]))), c["id"]) for c in open_clusters]
    dist, cid = min(dists)
    if settings.method == "kmeans" and dist > clusters_state["distance_threshold"] + 1e-9:
        return None
    return cid, round(dist, 6)


def add_to_state(
    clusters_state: dict[str, Any], video_id: str, descriptor: Mapping[str, Any], label: str | None = None
) -> Assignment:
    """Assign a new video with :func:`nearest_cluster` and record it in ``clusters_state`` (in place).

    A new cluster gets the next free id and the video's scaled vector as its centroid.
    """
    if any(video_id in c["videos"] for c in clusters_state["clusters"]):
        raise ClusterError(f"{video_id}: already in the cluster state")
    method = clusters_state["settings"]["method"]
    found = nearest_cluster(descriptor, clusters_state, label)
    if found is not None:
        cid, dist = found
        cluster = next(c for c in clusters_state["clusters"] if c["id"] == cid)
        cluster["videos"] = sorted([*cluster["videos"], video_id])
        return Assignment(
            video_id, cid, dist, {"method": method, "added": True, "cluster_size": len(cluster["videos"])}
        )
    scaling = Scaling.from_dict(clusters_state["scaling"])
    point = scaling.transform(_vector(video_id, descriptor, scaling.groups))
    used = [int(c["id"][1:]) for c in clusters_state["clusters"]]
    cid = f"c{max(used, default=-1) + 1:03d}"
    lab = str(label) if method == "label" and label is not None else None
    clusters_state["clusters"].append(
        {"id": cid, "videos": [video_id], "centroid": [float(v) for v in point], "label": lab}
    )
    return Assignment(
        video_id, cid, 0.0, {"method": method, "added": True, "new_cluster": True, "cluster_size": 1}
    )
