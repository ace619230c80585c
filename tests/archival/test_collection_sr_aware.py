"""SR-aware encoding in a collection (issue 15 item 1): per-segment CRFs chosen with the cluster's model.

One store of 2 real segments (16 frames, 128x72, cut from ``bigbuckbunny.mp4``) in one cluster,
the tiny CI model, a gop of 8 and a CRF ladder of 26 / 30 (the config's) / 36, a 2-iteration refine
of the cluster model on the SR-aware streams. x264 runs single-threaded (``-threads 1``) so that its
bytes are the same on every machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from basicvsr_archival.archival import store as store_mod
from basicvsr_archival.archival.collection import _charged_bytes, archive_collection
from basicvsr_archival.utils.ffmpeg import count_video_frames, probe_video, run_ffmpeg

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CONFIG = "configs/archival/collection_tiny_ci.py"
FRAMES, GOP, CRF = 16, 8, 30
OPTIONS = {
    "cluster.method": "single", "cluster.max_videos_per_cluster": None, "cluster.iters_per_video": 5,
    "codec.crf": CRF, "codec.extra_args": ["-threads", "1"], "finetune.patch_size": 64,
    "codec.sr_aware": {"enabled": True, "gop": GOP, "crfs": [26, 36], "refine_iters": 2},
}  # fmt: skip


def _cut(src: Path, dst: Path, start: int) -> Path:
    """``FRAMES`` frames of ``src`` from ``start``, centre-cropped to 16:9, 128x72 yuv420p, x264 CRF 12."""
    vf = (
        f"trim=start_frame={start}:end_frame={start + FRAMES},setpts=PTS-STARTPTS,"
        "crop='min(iw,ih*16/9)':'min(ih,iw*9/16)',scale=128:72:flags=area,setsar=1,format=yuv420p"
    )
    args = ["-y", "-i", str(src), "-map", "0:v:0", "-vf", vf, "-c:v", "libx264", "-crf", "12"]
    run_ffmpeg([*args, "-threads", "1", str(dst)], f"cutting a segment of {src}")
    return dst


@pytest.fixture(scope="module")
def sr_store(shared_dir: Path, repo_root: Path, tmp_path_factory):
    """The store, the segments and the run's result."""
    out = tmp_path_factory.mktemp("collection_sr_aware")
    src = shared_dir / "data" / "videos" / "bigbuckbunny.mp4"
    segments = [_cut(src, out / f"bbb_{start}.mp4", start) for start in (20, 100)]
    store = out / "store"
    result = archive_collection(repo_root / CONFIG, segments, store, cfg_options=OPTIONS, progress=False)
    assert result.ok, result.failed
    return store, segments, result


def _videos(store: Path):
    """(video row, manifest) of every video of the store, and the clusters."""
    with store_mod.Store.open(store, lock=False) as st:
        rows = [(v, st.read_manifest(v["manifest_sha"])) for v in st.videos()]
        return rows, st.clusters()


def test_manifests_record_per_segment_crfs_and_the_stream_decodes(sr_store):
    """Every video's lr record: one CRF per gop of 8 frames, within the uniform budget; its LR object
    is the SR-aware stream (16 frames of 64x36), the cluster's model the refined one."""
    store, _, result = sr_store
    rows, clusters = _videos(store)
    assert len(rows) == 2 and len(clusters) == 1
    cluster = clusters[0]
    assert [r for r in result.ran if r.startswith("sr_aware")] == [
        *sorted(f"sr_aware:{row['id']}" for row, _ in rows),
        f"sr_aware_refine:{cluster['id']}",
    ]
    refine = cluster["settings"]["sr_aware_refine"]
    assert refine["iterations"] == 2 and refine["finetune"]["budget"]["iters"] == 2
    for row, manifest in rows:
        lr = manifest["lr"]
        crfs = [s["crf"] for s in lr["segments"]]
        assert len(crfs) == FRAMES // GOP == 2 and set(crfs) <= {26, CRF, 36}
        assert [s["start"] for s in lr["segments"]] == [0, GOP]
        assert lr["sr_aware"]["stream_bytes"] == sum(s["bytes"] for s in lr["segments"])
        assert lr["sr_aware"]["goal_met"] and lr["sr_aware"]["stream_bytes"] <= lr["sr_aware"]["budget"]
        assert lr["sr_aware"]["ladder"]["crfs"] == [26, CRF, 36]
        assert lr["sr_aware"]["refine"] == {"iterations": 2}
        assert "seconds" not in lr["sr_aware"] and str(store) not in lr["command"]
        assert lr["command"].startswith("ffmpeg ") and lr["command"].endswith(" lr.mp4")
        members = manifest["members"]
        assert members["lr.mp4"]["sha256"] == row["info"]["lr_object"]
        assert members[manifest["model"]["member"]]["sha256"] == cluster["model_sha"]
        lr_path = store / "objects" / row["info"]["lr_object"][:2] / row["info"]["lr_object"]
        info = probe_video(lr_path)
        assert (info.width, info.height) == (64, 36)
        assert count_video_frames(lr_path, decode=True) == FRAMES


def test_uniform_streams_and_old_model_leave_the_store(sr_store):
    """The replaced uniform LR objects and the unrefined model are gone; gc finds nothing; verify passes."""
    store, _, _ = sr_store
    rows, clusters = _videos(store)
    with store_mod.Store.open(store) as st:
        stored = st.stored_shas()
        uniform = {row["info"]["sr_aware"]["uniform_object"] for row, _ in rows}
        assert len(uniform) == 2 and not uniform & stored
        assert clusters[0]["settings"]["sr_aware_refine"]["from_model"] not in stored
        kinds = sorted(o["kind"] for o in st.object_rows())
        assert kinds == ["base_model", "lr", "lr", "manifest", "manifest", "model"]
        assert st.gc() == []
    assert store_mod.verify(store).ok


def test_charged_bytes_count_the_sr_aware_stream(sr_store):
    """A video's charged bytes: its SR-aware LR object + half the shared model + its manifest."""
    store, _, _ = sr_store
    rows, _ = _videos(store)
    for row, manifest in rows:
        members = manifest["members"]
        manifest_bytes = (store / "objects" / row["manifest_sha"][:2] / row["manifest_sha"]).stat().st_size
        assert members["lr.mp4"]["bytes"] == row["info"]["sr_aware"]["file_bytes"]
        assert row["bytes"] == _charged_bytes(members, manifest_bytes, [r["id"] for r, _ in rows])


def test_video_restores_by_id(sr_store, tmp_path):
    """A store video restores from its SR-aware stream: 16 frames of 128x72."""
    store, segments, _ = sr_store
    out = tmp_path / "restored.mkv"
    with store_mod.Store.open(store, lock=False) as st:
        res = store_mod.restore_video(st, segments[1].stem, out, lossless=True, progress=False)
    info = probe_video(out)
    assert (res.num_frames, info.num_frames, info.width, info.height) == (FRAMES, FRAMES, 128, 72)


def test_resumed_run_redoes_no_sr_aware_work(sr_store, repo_root):
    """A resumed run runs no task and leaves the store as it was; a task whose record the driver lost
    returns its finished record from the work dir without encoding again."""
    from basicvsr_archival.archival.collection_config import load_collection_config
    from basicvsr_archival.archival.collection_sr_aware import sr_aware_task

    store, segments, _ = sr_store
    before = _videos(store)
    again = archive_collection(
        repo_root / CONFIG, segments, store, resume=True, cfg_options=OPTIONS, progress=False
    )
    assert again.ok and again.ran == [] and _videos(store) == before
    row = before[0][0][0]
    work = store / "work" / "videos" / row["id"]
    record = json.loads((work / "sr_aware" / "record.json").read_text())
    stamp = (work / "lr_sr_aware.mp4").stat().st_mtime_ns
    cfg, _ = load_collection_config(repo_root / CONFIG, OPTIONS)
    job = {"cfg": cfg, "source": row["source"], "work": str(work), "model": "-", "base": "-",
           "model_sha": record["model_sha"], "uniform": "-"}  # fmt: skip
    got = sr_aware_task(job)
    assert got["sha256"] == record["sha256"] and got["segments"] == row["info"]["sr_aware"]["segments"]
    assert (work / "lr_sr_aware.mp4").stat().st_mtime_ns == stamp


def test_video_added_later_is_encoded_with_the_refined_model(sr_store, tmp_path, repo_root):
    """A run that stopped after one video continues: only the new video is prepared, SR-aware encoded
    (with the refined cluster model) and packaged; the cluster is neither trained nor refined again."""
    _, segments, _ = sr_store
    store = tmp_path / "store"
    first = archive_collection(repo_root / CONFIG, segments[:1], store, cfg_options=OPTIONS, progress=False)
    assert first.ok and "sr_aware_refine:c000" in first.ran
    again = archive_collection(
        repo_root / CONFIG, segments, store, resume=True, cfg_options=OPTIONS, progress=False
    )
    new = segments[1].stem
    assert again.ok and again.ran == [f"prepare:{new}", f"sr_aware:{new}", f"package:{new}"]
    rows, clusters = _videos(store)
    added = next(row for row, _ in rows if row["id"] == new)
    assert added["info"]["sr_aware"]["model_sha"] == clusters[0]["model_sha"]
    assert all(len(m["lr"]["segments"]) == 2 for _, m in rows)
    with store_mod.Store.open(store) as st:
        assert added["info"]["sr_aware"]["uniform_object"] not in st.stored_shas()
        assert st.gc() == []
    assert store_mod.verify(store).ok
