"""Clustering a collection (archival/cluster.py): settings, the four methods, splits, ids, additions."""

import json
import math
from collections import defaultdict

import numpy as np
import pytest

from basicvsr_archival.archival.cluster import (
    Assignment,
    ClusterError,
    ClusterSettings,
    Scaling,
    add_to_state,
    assign_clusters,
    cluster_state,
    kmeans,
    nearest_cluster,
)
from basicvsr_archival.archival.descriptors import compute_descriptors

GROUPS = [["si", 1], ["ti", 1], ["colour", 6]]


def _desc(vector) -> dict:
    """A descriptor dict with an 8-long vector (si, ti, 6 colour numbers)."""
    vector = [float(v) for v in vector]
    return {"vector": vector, "groups": GROUPS}


def _blobs(sizes=(3, 4), spread=0.1, seed=0) -> dict:
    """Descriptors of tight blobs far apart: blob b's videos are named f"{'ab'[b]}{i}"."""
    rng = np.random.default_rng(seed)
    out = {}
    for b, n in enumerate(sizes):
        centre = np.full(8, 10.0 * b)
        for i in range(n):
            out[f"{'abcd'[b]}{i}"] = _desc(centre + rng.normal(0, spread, 8))
    return out


def _members(assignments) -> dict[str, list[str]]:
    """cluster id -> sorted video ids."""
    out = defaultdict(list)
    for a in assignments:
        out[a.cluster_id].append(a.video_id)
    return {c: sorted(v) for c, v in sorted(out.items())}


def test_settings_validation_one_line_naming_the_key():
    """Bad values name the key; from_dict/to_dict round-trip; defaults weight TI 0.25."""
    s = ClusterSettings.from_dict({"method": "kmeans", "k": 3, "seed": 7})
    assert ClusterSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.weights == {"si": 1.0, "ti": 0.25, "colour": 1.0, "embedding": 1.0}
    bad = [
        ({"method": "knn"}, "cluster.method must be one of"),
        ({"method": "kmeans"}, "cluster.k or cluster.max_videos_per_cluster is needed"),
        ({"method": "kmeans", "k": 0}, r"cluster.k must be an int >= 1 or None, got 0"),
        ({"method": "single", "k": 2}, "cluster.k is only used by method='kmeans'"),
        ({"method": "per_video", "max_videos_per_cluster": 2}, "cluster.max_videos_per_cluster is only"),
        ({"method": "label", "seed": -1}, "cluster.seed must be an int >= 0"),
        ({"method": "kmeans", "k": 2, "weights": {"motion": 1}}, r"cluster.weights: unknown group\(s\)"),
        ({"method": "kmeans", "k": 2, "max_distance": -1}, "cluster.max_distance must be a number >= 0"),
        ({"method": "single", "clusters": 2}, r"cluster: unknown setting\(s\) \['clusters'\]"),
    ]
    for cfg, msg in bad:
        with pytest.raises(ClusterError, match=msg) as err:
            ClusterSettings.from_dict(cfg)
        assert "\n" not in str(err.value)


def test_scaling_standardises_and_weights_groups():
    """z-score per dimension (constant -> std 1), each group scaled by weight / sqrt(length)."""
    vectors = np.array([[0.0, 1.0, 5.0, 0, 0, 0, 0, 0], [2.0, 3.0, 5.0, 0, 0, 0, 0, 0]])
    sc = Scaling.fit(vectors, GROUPS, {"si": 1.0, "ti": 0.25, "colour": 1.0})
    assert sc.mean[:3] == [1.0, 2.0, 5.0] and sc.std[:3] == [1.0, 1.0, 1.0]
    assert sc.weight == pytest.approx([1.0, 0.25] + [1 / math.sqrt(6)] * 6)
    assert sc.transform(vectors)[1, :3] == pytest.approx([1.0, 0.25, 0.0])
    assert Scaling.from_dict(json.loads(json.dumps(sc.to_dict()))) == sc


def test_per_video_and_single():
    """per_video: c000.. in id order, distance 0; single: one cluster, distance to the centroid."""
    descs = _blobs((2, 1))
    per = assign_clusters(descs, ClusterSettings("per_video"))
    assert [(a.video_id, a.cluster_id, a.distance) for a in per] == [
        ("a0", "c000", 0.0),
        ("a1", "c001", 0.0),
        ("b0", "c002", 0.0),
    ]
    single = assign_clusters(descs, ClusterSettings("single"))
    assert {a.cluster_id for a in single} == {"c000"}
    # b0 lies ~ 2/3 of the blob distance from the centroid, the a's ~ 1/3
    da = [a.distance for a in single]
    assert da[2] == pytest.approx(2 * da[0], rel=0.05) and single[0].reason["cluster_size"] == 3


def test_kmeans_finds_blobs_order_free_and_seeded():
    """Two far blobs with k=2: the blobs, ids by first member, the same for any input order."""
    descs = _blobs((3, 4))
    got = assign_clusters(descs, ClusterSettings("kmeans", k=2, seed=3))
    assert _members(got) == {"c000": ["a0", "a1", "a2"], "c001": ["b0", "b1", "b2", "b3"]}
    assert all(isinstance(a, Assignment) for a in got)
    assert got[0].reason["method"] == "kmeans" and got[0].reason["k"] == 2
    assert got[0].reason["nearest_other"]["cluster"] == "c001"
    assert got[0].reason["nearest_other"]["distance"] > 10 * got[0].distance
    shuffled = dict(reversed(list(descs.items())))
    assert assign_clusters(shuffled, ClusterSettings("kmeans", k=2, seed=3)) == got


def test_kmeans_seed_determinism():
    """Same seed, same labels; k-means++ with another seed still ends in a valid k-partition."""
    pts = np.random.default_rng(1).normal(size=(40, 3))
    a, b = kmeans(pts, 4, seed=5), kmeans(pts, 4, seed=5)
    assert np.array_equal(a, b)
    assert sorted(set(kmeans(pts, 4, seed=6).tolist())) == [0, 1, 2, 3]
    assert kmeans(pts[:2], 5, seed=0).tolist() in ([0, 1], [1, 0])  # k capped at the number of points


def test_max_videos_per_cluster_splits():
    """One blob of 7 with cap 3 is split into parts of <= 3; the cap alone sets k = ceil(n / cap)."""
    descs = _blobs((7,), spread=1.0)
    got = assign_clusters(descs, ClusterSettings("kmeans", k=1, max_videos_per_cluster=3))
    sizes = sorted(len(v) for v in _members(got).values())
    assert max(sizes) <= 3 and sum(sizes) == 7 and len(sizes) >= 3
    assert all(a.reason["split_from_size"] == 7 for a in got)
    only_cap = assign_clusters(_blobs((3, 3)), ClusterSettings("kmeans", max_videos_per_cluster=3))
    assert _members(only_cap) == {"c000": ["a0", "a1", "a2"], "c001": ["b0", "b1", "b2"]}


def test_identical_videos_split_in_id_order():
    """k-means cannot separate identical vectors: an oversized group is cut in id order."""
    descs = {f"v{i}": _desc([1.0] * 8) for i in range(5)}
    got = assign_clusters(descs, ClusterSettings("kmeans", k=1, max_videos_per_cluster=2))
    assert _members(got) == {"c000": ["v0", "v1"], "c001": ["v2", "v3"], "c002": ["v4"]}
    assert {a.distance for a in got} == {0.0}


def test_label_method():
    """One cluster per label (ids by first member), missing labels named, cap splits a label."""
    descs = _blobs((2, 2))
    labels = {"a0": "zelda", "a1": "mario", "b0": "zelda", "b1": "mario"}
    got = assign_clusters(descs, ClusterSettings("label"), labels)
    assert _members(got) == {"c000": ["a0", "b0"], "c001": ["a1", "b1"]}
    assert got[0].reason == {
        "method": "label",
        "label": "zelda",
        "cluster_size": 2,
        "nearest_other": got[0].reason["nearest_other"],
    }
    with pytest.raises(ClusterError, match="b1: no label"):
        assign_clusters(descs, ClusterSettings("label"), {k: v for k, v in labels.items() if k != "b1"})
    with pytest.raises(ClusterError, match="needs a label for every video"):
        assign_clusters(descs, ClusterSettings("label"))
    capped = assign_clusters(descs, ClusterSettings("label", max_videos_per_cluster=1), labels)
    assert len(_members(capped)) == 4


def test_bad_descriptors_named():
    """A descriptor without a vector or with other groups names the video."""
    descs = _blobs((2,))
    with pytest.raises(ClusterError, match="x: descriptor has no 'vector'"):
        assign_clusters({**descs, "x": {"si": 1}}, ClusterSettings("single"))
    odd = {"vector": [1.0] * 9, "groups": [["si", 1], ["ti", 1], ["colour", 7]]}
    with pytest.raises(ClusterError, match="x: descriptor groups"):
        assign_clusters({**descs, "x": odd}, ClusterSettings("single"))
    with pytest.raises(ClusterError, match="no videos to cluster"):
        assign_clusters({}, ClusterSettings("single"))


def test_nearest_cluster_and_add_to_state():
    """A new video joins the nearest centroid, or a new cluster when far or when the cluster is full."""
    descs = _blobs((3, 3))
    settings = ClusterSettings("kmeans", k=2)
    state = json.loads(json.dumps(cluster_state(descs, assign_clusters(descs, settings), settings)))
    assert [c["videos"] for c in state["clusters"]] == [["a0", "a1", "a2"], ["b0", "b1", "b2"]]
    assert 0.5 < state["distance_threshold"] < 2  # half the gap between the two centroids
    near_b = _desc(np.full(8, 10.0))
    cid, dist = nearest_cluster(near_b, state)
    assert cid == "c001" and dist < state["distance_threshold"]
    far = _desc([40.0, *[5.0] * 7])
    assert nearest_cluster(far, state) is None  # far from both: new content
    added = add_to_state(state, "b9", near_b)
    assert (added.cluster_id, state["clusters"][1]["videos"]) == ("c001", ["b0", "b1", "b2", "b9"])
    new = add_to_state(state, "m0", far)
    assert (new.cluster_id, new.reason["new_cluster"]) == ("c002", True)
    with pytest.raises(ClusterError, match="b9: already in the cluster state"):
        add_to_state(state, "b9", near_b)
    capped = ClusterSettings("kmeans", k=2, max_videos_per_cluster=3)
    full = cluster_state(descs, assign_clusters(descs, capped), capped)
    assert nearest_cluster(near_b, full) is None  # both clusters are full


def test_nearest_cluster_other_methods():
    """per_video: always new; single: the one cluster; label: the cluster of the label."""
    descs = _blobs((2, 2))
    per = ClusterSettings("per_video")
    assert nearest_cluster(descs["a0"], cluster_state(descs, assign_clusters(descs, per), per)) is None
    single = ClusterSettings("single")
    far = _desc(np.full(8, 99.0))
    assert nearest_cluster(far, cluster_state(descs, assign_clusters(descs, single), single))[0] == "c000"
    labels = {"a0": "x", "a1": "y", "b0": "x", "b1": "y"}
    lab = ClusterSettings("label")
    state = cluster_state(descs, assign_clusters(descs, lab, labels), lab, labels)
    assert nearest_cluster(far, state, label="y")[0] == "c001"
    assert nearest_cluster(far, state, label="z") is None
    with pytest.raises(ClusterError, match="a label is needed"):
        nearest_cluster(far, state)


@pytest.fixture(scope="module")
def segment_descriptors(collection_segments, tiny_feature_model):
    """Descriptors of the 15 real segments' LR streams (tiny seeded c8n1 model), and their sources."""
    descs = {s.id: compute_descriptors(s.lr, tiny_feature_model) for s in collection_segments}
    return descs, {s.id: s.source for s in collection_segments}


def _groups_by_source(assignments, source) -> bool:
    """Every cluster holds one source and every source one cluster."""
    members = _members(assignments)
    return all(len({source[v] for v in m}) == 1 for m in members.values()) and len(members) == len(
        set(source[a.video_id] for a in assignments)
    )


def test_kmeans_groups_real_segments_by_source(segment_descriptors):
    """k = number of sources groups same-size real segments by source (issue 14, Done when)."""
    descs, source = segment_descriptors
    sources = sorted(set(source.values()))
    got = assign_clusters(descs, ClusterSettings("kmeans", k=len(sources)))
    assert _groups_by_source(got, source)
    assert len(_members(got)) == 5
    # and on subsets: 2 segments per source, 4 of the 5 sources, each with 3 k-means seeds
    subsets = [[v for v in descs if int(v[-1]) in pair] for pair in ((0, 1), (1, 2), (0, 2))]
    subsets += [[v for v in descs if source[v] != drop] for drop in sources]
    good = 0
    for sub in subsets:
        k = len({source[v] for v in sub})
        for seed in range(3):
            good += _groups_by_source(
                assign_clusters({v: descs[v] for v in sub}, ClusterSettings("kmeans", k=k, seed=seed)), source
            )
    assert good == 3 * len(subsets) == 24
    # without the embedding (no model) the hand-made descriptors still separate the sources
    no_emb = ClusterSettings("kmeans", k=len(sources), weights={"embedding": 0.0})
    assert _groups_by_source(assign_clusters(descs, no_emb), source)


def test_real_segments_added_to_an_existing_store(segment_descriptors):
    """Clustered without one segment per source, each held-out segment is nearest its own source.

    With the default threshold 12 of the 15 join their source's cluster and 3 (Megamind twice, the
    tree segment a hand enters) start new clusters; none joins another source's cluster.
    """
    descs, source = segment_descriptors
    joined = 0
    for held in ("_s0", "_s1", "_s2"):
        first = {v: d for v, d in descs.items() if not v.endswith(held)}
        settings = ClusterSettings("kmeans", k=5)
        assignments = assign_clusters(first, settings)
        state = cluster_state(first, assignments, settings)
        anywhere = cluster_state(first, assignments, ClusterSettings("kmeans", k=5, max_distance=1e9))
        cluster_source = {c["id"]: source[c["videos"][0]] for c in state["clusters"]}
        for vid in sorted(v for v in descs if v.endswith(held)):
            nearest, dist = nearest_cluster(descs[vid], anywhere)
            assert cluster_source[nearest] == source[vid]
            found = nearest_cluster(descs[vid], state)
            assert found is None or found == (nearest, dist)
            joined += found is not None
    assert joined == 12
