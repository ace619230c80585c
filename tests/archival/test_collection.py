"""A collection of real segments archived into a store with the local and the Ray engine.

One store per engine is built once per session (6 segments of 3 sources, k-means with k=3, the
tiny CI model); the tests read them. Faults (a killed run, a killed Ray worker, a missing video,
a store in use) get their own small stores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from basicvsr_archival.archival import store as store_mod
from basicvsr_archival.archival.collection import CollectionError, archive_collection
from basicvsr_archival.archival.engines import marker_name, read_marker
from basicvsr_archival.utils.ffmpeg import probe_video

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CONFIG = "configs/archival/collection_tiny_ci.py"
OPTIONS = {"cluster.k": 3, "cluster.max_videos_per_cluster": None}
SINGLE = ["--cfg-options", "cluster.method=single", "cluster.max_videos_per_cluster=None"]
VOLATILE = {"created_at", "updated_at", "engine", "worker_pid", "seconds", "eval_seconds", "tasks"}


def _strip(obj):
    """The catalog JSON without timestamps, timings and engine fields (what both engines must agree on)."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _six(segments):
    """Two segments of each of three sources (same size), as paths."""
    by_source: dict[str, list] = {}
    for seg in segments:
        by_source.setdefault(seg.source, []).append(seg)
    chosen = [segs[:2] for _, segs in sorted(by_source.items()) if len(segs) >= 2][:3]
    assert len(chosen) == 3
    return [s for pair in chosen for s in pair]


@pytest.fixture(scope="session")
def six_segments(collection_segments):
    return _six(collection_segments)


@pytest.fixture(scope="session")
def local_store(tmp_path_factory, six_segments, repo_root):
    out = tmp_path_factory.mktemp("collection") / "local_store"
    result = archive_collection(
        repo_root / CONFIG, [s.path for s in six_segments], out, cfg_options=OPTIONS, progress=False
    )
    assert result.ok, result.failed
    return out, result


@pytest.fixture(scope="session")
def ray_store(tmp_path_factory, six_segments, repo_root, ray_in_process):
    out = tmp_path_factory.mktemp("collection") / "ray_store"
    result = archive_collection(
        repo_root / CONFIG, [s.path for s in six_segments], out, engine="ray", cfg_options=OPTIONS,
        progress=False,
    )  # fmt: skip
    assert result.ok, result.failed
    return out, result


def _catalog(store: Path) -> dict:
    with store_mod.Store.open(store, lock=False) as st:
        return store_mod.catalog_json(st)


def test_local_store_clusters_by_source_and_stores_one_model_per_cluster(local_store, six_segments):
    store, result = local_store
    assert set(result.videos.values()) == {"done"}
    cat = _catalog(store)
    assert len(cat["videos"]) == 6 and len(cat["clusters"]) == 3
    source_of = {s.id: s.source for s in six_segments}
    for c in cat["clusters"]:
        assert len({source_of[v] for v in c["videos"]}) == 1, c  # k-means groups segments by source
        assert len(c["videos"]) == 2
    models = {c["model"] for c in cat["clusters"]}
    assert len(models) == 3
    with store_mod.Store.open(store, lock=False) as st:
        kinds = [o["kind"] for o in st.object_rows()]
    assert kinds.count("model") == 3 and kinds.count("base_model") == 1
    assert kinds.count("manifest") == 6 and kinds.count("lr") == 6
    assert store_mod.verify(store).ok


def test_ray_engine_gives_the_same_store_from_worker_processes(local_store, ray_store):
    local, ray = _catalog(local_store[0]), _catalog(ray_store[0])
    assert _strip(local) == _strip(ray)
    with store_mod.Store.open(ray_store[0], lock=False) as st:
        tasks = st.tasks()
        shas = {o["sha"] for o in st.object_rows()}
    with store_mod.Store.open(local_store[0], lock=False) as st:
        assert {o["sha"] for o in st.object_rows()} == shas
    pids = {t["worker_pid"] for t in tasks}
    assert len(tasks) == 6 + 3 and os.getpid() not in pids and None not in pids


@pytest.mark.parametrize("index", [0, 3])
def test_every_video_restores_by_id(local_store, six_segments, tmp_path, index):
    store, _ = local_store
    seg = six_segments[index]
    out = tmp_path / f"{seg.id}.mkv"
    with store_mod.Store.open(store, lock=False) as st:
        store_mod.restore_video(st, seg.id, out, progress=False)
    src, got = probe_video(seg.path), probe_video(out)
    assert got.num_frames == src.num_frames
    assert (got.width, got.height) == (src.width, src.height)
    assert got.fps == pytest.approx(src.fps, rel=1e-3)
    assert got.has_audio == src.has_audio


def test_flipped_byte_in_any_object_is_caught(local_store, tmp_path):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(local_store[0], copy)
    with store_mod.Store.open(copy, lock=False) as st:
        objects = st.object_rows()
    for kind in ("lr", "model", "manifest", "base_model"):
        obj = next(o for o in objects if o["kind"] == kind)
        path = copy / "objects" / obj["sha"][:2] / obj["sha"]
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.chmod(0o644)
        path.write_bytes(bytes(data))
        report = store_mod.verify(copy)
        assert not report.ok and any(obj["sha"] in p for p in report.problems)
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    assert store_mod.verify(copy).ok


def test_existing_store_needs_resume_and_a_store_in_use_is_refused(local_store, six_segments, repo_root):
    store, _ = local_store
    with pytest.raises(CollectionError, match="--resume"):
        archive_collection(repo_root / CONFIG, [six_segments[0].path], store, cfg_options=OPTIONS)
    with store_mod.Store.open(store):
        proc = subprocess.run(
            [sys.executable, "tools/archive_collection.py", CONFIG, str(six_segments[0].path),
             "-o", str(store), "--resume", "--no-progress"],
            cwd=repo_root, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "in use" in lines[0], proc.stderr


def test_missing_video_is_named_and_the_rest_archived(tmp_path, six_segments, repo_root):
    missing = tmp_path / "gone.mp4"
    proc = subprocess.run(
        [sys.executable, "tools/archive_collection.py", CONFIG, str(six_segments[0].path), str(missing),
         "-o", str(tmp_path / "store"), "--no-progress", *SINGLE],
        cwd=repo_root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "gone.mp4: video not found" in proc.stderr
    cat = _catalog(tmp_path / "store")
    assert [v["state"] for v in cat["videos"]] == ["done"]


def test_killed_local_run_resumes_without_recomputing(tmp_path, six_segments, repo_root):
    store = tmp_path / "store"
    videos = [str(s.path) for s in six_segments[:4]]
    cmd = [sys.executable, "tools/archive_collection.py", CONFIG, *videos, "-o", str(store), "--no-progress",
           *SINGLE]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=repo_root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    done: list = []
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if (store / "catalog.sqlite").is_file():
            with store_mod.Store.open(store, lock=False) as st:
                done = [t for t in st.tasks() if t["state"] == "done"]
            if len(done) >= 2:
                break
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t["name"]: t["attempts"] for t in done}
    subprocess.run([*cmd, "--resume"], cwd=repo_root, check=True, capture_output=True, timeout=600)
    with store_mod.Store.open(store, lock=False) as st:
        after = {t["name"]: t["attempts"] for t in st.tasks()}
    assert all(after[name] == n for name, n in before.items())  # finished tasks not redone
    assert len(after) == 4 + 1
    assert store_mod.verify(store).ok
    assert {v["state"] for v in _catalog(store)["videos"]} == {"done"}


def _kill_first_checkpointed_finetune(store: Path, killed: dict, stop: threading.Event) -> None:
    """SIGKILL the Ray worker of the first cluster fine-tuning that has saved a checkpoint (attempt 1)."""
    clusters = store / "work" / "clusters"
    while not stop.wait(0.02):
        for work in sorted(clusters.glob("*")) if clusters.is_dir() else []:
            markers = list((store / "work" / "engine").glob(f"*/{marker_name(work.name)}"))
            if not (work / "last_checkpoint").is_file() or (work / "finetuned.pth").exists() or not markers:
                continue
            attempt, pid = read_marker(markers[0])
            if attempt == 1 and pid not in (0, os.getpid()):
                checkpoint = Path((work / "last_checkpoint").read_text().strip()).name
                os.kill(pid, signal.SIGKILL)
                killed.update(cluster=work.name, pid=pid, checkpoint=checkpoint)
                return


def test_ray_worker_killed_while_fine_tuning_is_retried_without_recomputing(
    tmp_path, six_segments, repo_root, ray_in_process, ray_store
):
    store, killed, stop = tmp_path / "store", {}, threading.Event()
    killer = threading.Thread(target=_kill_first_checkpointed_finetune, args=(store, killed, stop))
    killer.start()
    try:
        result = archive_collection(
            repo_root / CONFIG, [s.path for s in six_segments], store, engine="ray", cfg_options=OPTIONS,
            progress=False,
        )  # fmt: skip
    finally:
        stop.set()
        killer.join()
    assert killed, "no fine-tuning was caught after its first checkpoint"
    assert result.ok, result.failed
    assert store_mod.verify(store).ok
    with store_mod.Store.open(store, lock=False) as st:
        tasks = {t["name"]: t for t in st.tasks()}
        clusters = {c["id"]: c for c in st.clusters()}
        shas = {o["sha"] for o in st.object_rows()}
    retried = tasks[f"finetune:{killed['cluster']}"]
    assert retried["attempts"] == 2 and retried["state"] == "done"
    assert retried["worker_pid"] not in (killed["pid"], os.getpid())
    others = [t["attempts"] for name, t in tasks.items() if name != retried["name"]]
    assert len(tasks) == 6 + 3 and others == [1] * 8  # no video prepared twice, no other cluster redone
    stats = clusters[killed["cluster"]]["settings"]["finetune"]
    assert f"iter_{stats['resumed_from_iter']}.pth" == killed["checkpoint"] and stats["iters"] == 20
    with store_mod.Store.open(ray_store[0], lock=False) as st:  # the same bits as the unkilled run
        unkilled = {c["id"]: c["model_sha"] for c in st.clusters()}
        assert {o["sha"] for o in st.object_rows()} == shas
    assert {k: c["model_sha"] for k, c in clusters.items()} == unkilled and len(set(unkilled.values())) == 3


def test_added_video_joins_the_nearest_cluster_without_retraining(local_store, collection_segments, tmp_path,
                                                                 repo_root):  # fmt: skip
    import shutil

    store = tmp_path / "store"
    shutil.copytree(local_store[0], store, symlinks=True)
    before = _catalog(store)
    third = next(s for s in collection_segments if s.source == "box" and s.id.endswith("_s2"))
    result = archive_collection(repo_root / CONFIG, [third.path], store, resume=True, cfg_options=OPTIONS,
                                progress=False)  # fmt: skip
    assert result.ok and result.ran == [f"prepare:{third.id}", f"package:{third.id}"]  # no fine-tuning
    after = _catalog(store)
    joined = next(c for c in after["clusters"] if third.id in c["videos"])
    assert {v for v in joined["videos"] if v != third.id} == {"box_s0", "box_s1"}
    assert {c["model"] for c in after["clusters"]} == {c["model"] for c in before["clusters"]}
    assert store_mod.verify(store).ok
