"""The store: content-addressed objects, SQLite catalog, lock, gc, verify, import and restore by id.

Real files throughout: tiny tiny_ci archives (4 REDS frames cropped to 64x48, one with an AAC
track) made by the archive job, imported into real stores (real SQLite). ``tests/data/store_v1`` is
a store written by the first schema version (``python tests/archival/test_store.py --make-v1 DIR``
rebuilds it, run from the repository root with ``PYTHONPATH=.``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from basicvsr_archival.archival.catalog import StoreFormatError
from basicvsr_archival.archival.finetune import initial_state
from basicvsr_archival.archival.package import BaseCheckpointError, member_of, parse_manifest, sha256_file
from basicvsr_archival.archival.pipeline import load_archival_config, run_archive_job
from basicvsr_archival.archival.restore import restore_archive
from basicvsr_archival.archival.store import (
    Store,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    catalog_json,
    import_archive,
    restore_video,
    verify,
)
from basicvsr_archival.utils.audio import audio_streams
from basicvsr_archival.utils.cli import run_cli
from basicvsr_archival.utils.ffmpeg import frames_to_video, probe_video, run_ffmpeg

REPO = Path(__file__).resolve().parents[2]
TINY_CI = REPO / "configs" / "archival" / "tiny_ci.py"
STORE_V1 = REPO / "tests" / "data" / "store_v1"
OPTS = {"finetune.max_iters": 1, "finetune.patch_size": 64, "restore.max_seq_len": 4}


def tiny_source(reds_dir: Path, out: Path, left: int, audio: bool) -> Path:
    """4 REDS frames cropped to 64x48 at x=``left`` (x264 CRF 0), with a 0.17 s AAC tone if ``audio``."""
    frames = out.parent / f"{out.stem}.frames"
    frames.mkdir(parents=True)
    for i, f in enumerate(sorted(reds_dir.glob("*.png"))[:4]):
        os.symlink(f.resolve(), frames / f"{i:08d}.png")
    video = out.with_name(f"{out.stem}.video.mkv") if audio else out
    crop = ["-vf", f"crop=64:48:{left}:40"]
    frames_to_video(frames, video, "24000/1001", codec="libx264", crf=0, preset="ultrafast", extra_args=crop)
    if audio:
        args = ["-y", "-i", str(video), "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
        args += ["-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-t", "0.17", str(out)]
        run_ffmpeg(args, "muxing the tiny source")
    return out


def tiny_archive(reds_dir: Path, folder: Path, name: str, left: int, audio: bool, **opts) -> Path:
    """A tiny_ci archive (directory) of :func:`tiny_source`, fine-tuned 1 iteration from scratch."""
    src = tiny_source(reds_dir, folder / f"{name}.mkv", left, audio)
    out = folder / f"{name}.archive"
    run_archive_job(TINY_CI, src, out, folder / f"{name}.work", cfg_options={**OPTS, **opts}, progress=False)
    return out


def _tool(name: str):
    """The tool ``basicvsr_archival.tools.<name>`` (its ``main`` runs in-process)."""
    return importlib.import_module(f"basicvsr_archival.tools.{name}")


@pytest.fixture(scope="module")
def archives(reds_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Archives 'a' (silent), 'b' (AAC track) and 'delta' (int8 delta against a saved base) + the base."""
    tmp = tmp_path_factory.mktemp("store_archives")
    state, _ = initial_state(load_archival_config(TINY_CI).model, None, False, seed=3)
    base = tmp / "chkpts" / "tiny_base.pth"
    base.parent.mkdir()
    torch.save({"state_dict": state}, base)
    return {
        "a": tiny_archive(reds_demo_dir, tmp, "a", 64, False),
        "b": tiny_archive(reds_demo_dir, tmp, "b", 160, True),
        "delta": tiny_archive(reds_demo_dir, tmp, "delta", 96, False, base_checkpoint=str(base)),
        "base": base,
    }


def _object_files(root: Path) -> dict[str, Path]:
    """Every file under ``objects/`` by name."""
    return {p.name: p for p in (root / "objects").rglob("*") if p.is_file()}


def _manifest(store: Store, video_id: str) -> dict:
    """A store video's manifest."""
    return store.read_manifest(store.video(video_id)["manifest_sha"])


def _flip_byte(path: Path, offset: int = 0) -> None:
    """Invert one byte of a (read-only) file."""
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


def test_import_names_every_object_by_its_sha256(archives, tmp_path):
    with Store.open(tmp_path / "s", create=True) as store:
        vid = import_archive(store, archives["b"])
        manifest = _manifest(store, vid)
        rows = {r["sha"]: r for r in store.object_rows()}
    files = _object_files(tmp_path / "s")
    assert vid == "b" and set(files) == set(rows) and len(files) == 4  # lr, model, audio, manifest
    for sha, path in files.items():
        assert (
            sha256_file(path) == sha
            and path.parent.name == sha[:2]
            and rows[sha]["size"] == path.stat().st_size
        )
        assert path.stat().st_mode & 0o222 == 0  # objects are read-only
    original = archives["b"] / "manifest.json"
    assert files[hashlib.sha256(original.read_bytes()).hexdigest()].read_bytes() == original.read_bytes()
    for name, entry in manifest["members"].items():
        assert files[entry["sha256"]].read_bytes() == (archives["b"] / name).read_bytes()
    assert sorted(r["kind"] for r in rows.values()) == ["audio", "lr", "manifest", "model"]


def test_same_video_twice_and_a_shared_model_are_stored_once(archives, tmp_path):
    root = tmp_path / "s"
    with Store.open(root, create=True) as store:
        first = import_archive(store, archives["a"])
        files_once = {n: p.stat().st_ino for n, p in _object_files(root).items()}
        second = import_archive(store, archives["a"])
        assert (first, second) == ("a", "a-2") and len(files_once) == 3
        assert {n: p.stat().st_ino for n, p in _object_files(root).items()} == files_once  # not rewritten
        # a cluster video: b's LR stream and source, a's model object (as the collection run packages it)
        a_man = _manifest(store, "a")
        b_man = parse_manifest((archives["b"] / "manifest.json").read_bytes(), "b")
        model = member_of(a_man, "model", "a")
        files = {"lr.mp4": archives["b"] / "lr.mp4", "audio0.mka": archives["b"] / "audio0.mka"}
        files[model] = archives["a"] / model
        roles = {"lr.mp4": "lr_bitstream", "audio0.mka": "audio", model: "model"}
        body = {k: v for k, v in b_man.items() if k != "members"} | {"model": a_man["model"]}
        sha, _ = store.put_archive_manifest(files, roles, body)
        cluster = store.video("a")["cluster_id"]
        store.add_video("b-shared", source="b.mkv", cluster_id=cluster, manifest_sha=sha, state="done")
        kinds = [r["kind"] for r in store.object_rows()]
        assert [kinds.count(k) for k in ("model", "lr", "audio", "manifest")] == [1, 2, 1, 2]
        data = catalog_json(store)
        assert verify(store).problems == []
        out = restore_video(store, "b-shared", tmp_path / "shared.mkv", progress=False)
    [c] = data["clusters"]
    assert c["videos"] == ["a", "a-2", "b-shared"] and c["model"] == a_man["members"][model]["sha256"]
    assert (out.num_frames, out.width, out.height) == (4, 64, 48) and len(audio_streams(out.output)) == 1
    assert data["objects"]["by_kind"]["model"] == {"count": 1, "bytes": a_man["members"][model]["bytes"]}


def _sha_of(archive: Path) -> str:
    """Object name of an archive's manifest file."""
    return sha256_file(archive / "manifest.json")


def test_remove_and_gc_free_exactly_the_unreferenced_objects(archives, tmp_path):
    root = tmp_path / "s"
    with Store.open(root, create=True) as store:
        import_archive(store, archives["a"])
        import_archive(store, archives["a"])
        import_archive(store, archives["b"])
        orphan = store.put_bytes(b"nobody refers to this", "misc")
        (root / "tmp" / "obj-leftover").write_bytes(b"half-written")  # a put killed before its rename
        rowless = hashlib.sha256(b"renamed, then killed").hexdigest()  # killed before its catalog row
        store.object_path(rowless).parent.mkdir(exist_ok=True)
        store.object_path(rowless).write_bytes(b"renamed, then killed")
        report = verify(store)
        assert sorted(report.problems) == sorted(
            [
                f"{store.object_path(rowless)}: object is not in the catalog",
                f"{store.object_path(orphan)}: orphan object, nothing refers to it (run gc)",
                f"{store.object_path(rowless)}: orphan object, nothing refers to it (run gc)",
            ]
        )
        assert report.temp_files == 1
        assert store.gc() == sorted([orphan, rowless]) and not store.object_path(orphan).exists()
        assert list((root / "tmp").iterdir()) == [] and verify(store).ok
        store.remove_video("a")
        assert store.gc() == [] and store.cluster(store.video("a-2")["cluster_id"])["video_count"] == 1
        a_objects = {e["sha256"] for e in _manifest(store, "a-2")["members"].values()} | {
            _sha_of(archives["a"])
        }
        store.remove_video("a-2")
        assert sorted(store.gc()) == sorted(a_objects) and len(store.clusters()) == 1
        assert (
            set(_object_files(root)) == {r["sha"] for r in store.object_rows()}
            and len(store.object_rows()) == 4
        )
        assert verify(store).ok
        with pytest.raises(StoreError, match=r"no video 'a' in the store \(videos: b\)"):
            store.remove_video("a")


def _object_of(store: Store, video_id: str, kind: str) -> str:
    """The sha of a video's object of ``kind`` (its manifest, base model or the member with that role)."""
    if kind == "manifest":
        return store.video(video_id)["manifest_sha"]
    manifest = _manifest(store, video_id)
    if kind == "base_model":
        return manifest["model"]["base_checkpoint"]["sha256"]
    role = {"lr": "lr_bitstream"}.get(kind, kind)
    return manifest["members"][member_of(manifest, role, video_id)]["sha256"]


@pytest.mark.parametrize(
    "video, kind", [("b", "lr"), ("b", "model"), ("b", "audio"), ("b", "manifest"), ("delta", "base_model")]
)
def test_a_flipped_byte_in_any_object_is_caught_by_verify_and_restore(
    archives, tmp_path, video, kind, capsys
):
    root = tmp_path / "s"
    with Store.open(root, create=True) as store:
        import_archive(store, archives["b"])
        import_archive(store, archives["delta"], base_checkpoint=archives["base"])
        sha = _object_of(store, video, kind)
        assert store.object_row(sha)["kind"] == kind
        path = store.object_path(sha)
    _flip_byte(path, offset=len(path.read_bytes()) // 2)
    report = verify(root)
    assert report.problems[0] == f"{path}: object is corrupted (SHA-256 does not match its name)"
    assert run_cli(_tool("verify_archive").main, [str(root)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: object is corrupted")
    with Store.open(root, lock=False) as store, pytest.raises(StoreCorruptError, match="corrupted"):
        restore_video(store, video, tmp_path / "out.mkv", progress=False)
    assert not (tmp_path / "out.mkv").exists()
    if kind == "manifest":  # gc keeps what a damaged manifest names: it refuses
        with Store.open(root) as store, pytest.raises(StoreCorruptError, match="video b manifest"):
            store.gc()
        assert (
            len(_object_files(root)) == 8
        )  # b: lr, model, audio, manifest; delta: lr, model, manifest, base


def test_verify_catches_missing_references_and_catalog_drift(archives, tmp_path):
    root = tmp_path / "s"
    with Store.open(root, create=True) as store:
        import_archive(store, archives["a"])
        man = _manifest(store, "a")
        lr = man["members"]["lr.mp4"]["sha256"]
        store.object_path(lr).unlink()
        store.add_video("ghost", source="x.mkv", cluster_id="c404", state="done")
        problems = verify(store).problems
        with pytest.raises(StoreCorruptError, match="is missing"):
            restore_video(store, "a", tmp_path / "out.mp4", progress=False)
    assert f"{root / 'objects' / lr[:2] / lr}: object (lr) is missing" in problems
    assert f"{root}: video a: member lr.mp4 (object {lr[:16]}...) is missing or corrupted" in problems
    assert f"{root}: video ghost names a missing cluster c404" in problems
    assert f"{root}: video ghost is done but has no manifest" in problems
    assert len(problems) == 4


def test_restore_by_id_equals_restoring_the_archive(archives, tmp_path, capsys):
    root = tmp_path / "s"
    with Store.open(root, create=True) as store:
        import_archive(store, archives["b"])
    out = tmp_path / "by_id.mkv"
    argv = [str(root), "--video", "b", "-o", str(out), "--no-progress"]
    assert run_cli(_tool("restore").main, argv) == 0
    direct = restore_archive(archives["b"], tmp_path / "direct.mkv", progress=False)
    assert out.read_bytes() == direct.output.read_bytes()  # the same restore core, the same bytes
    src, got = probe_video(archives["b"].with_name("b.mkv")), probe_video(out)
    assert (got.num_frames, got.width, got.height, got.fps) == (
        src.num_frames,
        src.width,
        src.height,
        src.fps,
    )
    assert [(s.codec, s.sample_rate) for s in audio_streams(out)] == [("aac", 48000)]
    assert run_cli(_tool("restore").main, [str(root), "--video", "zz", "-o", str(tmp_path / "z.mp4")]) == 1
    assert capsys.readouterr().err == f"error: {root}: no video 'zz' in the store (videos: b)\n"
    for bad in ([str(root), "-o", "x.mp4"], [str(archives["a"]), "--video", "a", "-o", "x.mp4"]):
        with pytest.raises(SystemExit) as exc:
            _tool("restore").parse_args(bad)
        assert exc.value.code == 2


def test_delta_archive_brings_its_base_model_into_the_store(archives, tmp_path):
    root = tmp_path / "s"
    with Store.open(root, create=True) as store:
        with pytest.raises(BaseCheckpointError, match=r"base checkpoint tiny_base.pth \(sha256 "):
            import_archive(store, archives["delta"], base_checkpoint=tmp_path)
        assert store.videos() == [] and store.object_rows() == []  # nothing half-imported
        vid = import_archive(store, archives["delta"], base_checkpoint=archives["base"])
        base_sha = _manifest(store, vid)["model"]["base_checkpoint"]["sha256"]
        assert [r["sha"] for r in store.object_rows() if r["kind"] == "base_model"] == [base_sha]
        assert base_sha == sha256_file(archives["base"]) and store.gc() == [] and verify(store).ok
        res = restore_video(store, vid, tmp_path / "out.mp4", progress=False)  # no base outside the store
        assert (res.num_frames, res.width, res.height) == (4, 64, 48)
        store.object_path(base_sha).unlink()
        store.delete_object_row(base_sha)
        assert (
            f"{root}: video delta: base checkpoint tiny_base.pth is not in the store"
            in verify(store).problems
        )


def test_lock_refuses_a_second_opener_with_one_line(archives, tmp_path):
    root = tmp_path / "s"
    with Store.open(root, create=True) as store:
        import_archive(store, archives["a"])
        with pytest.raises(StoreLockedError) as exc:
            Store.open(root)
        assert str(exc.value) == f"{root}: store is in use by another run (pid {os.getpid()})"
        cmd = [sys.executable, str(REPO / "tools" / "verify_archive.py"), str(root)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert done.stderr == f"error: {root}: store is in use by another run (pid {os.getpid()})\n"
        with Store.open(root, lock=False) as reader:  # readers do not need the lock
            assert [v["id"] for v in reader.videos()] == ["a"]
            with pytest.raises(StoreError, match="opened read-only"):
                reader.put_bytes(b"x", "misc")
    with Store.open(root) as again:
        assert again.video("a")["state"] == "done"


def test_catalog_rows_tasks_settings_and_schema_version(tmp_path):
    root = tmp_path / "s"
    with Store.open(root, create=True) as store:
        assert store.meta()["schema_version"] == "1" and store.schema_version == 1
        store.add_cluster("c000", method="kmeans", reason={"k": 2}, settings={"seed": 0})
        store.add_video("clip", source="clip.mp4", cluster_id="c000", info={"fps": "25"})
        assert (
            store.unique_video_id("/x/clip.mp4") == "clip-2"
            and store.unique_video_id("my clip.mkv") == "my_clip"
        )
        store.set_assignment(
            "clip", "c000", descriptor={"si": 1.5}, distance=0.25, reason={"nearest": "c000"}
        )
        assert store.cluster("c000")["video_count"] == 1 and store.cluster("c000")["reason"] == {"k": 2}
        row = store.update_video("clip", state="done", bytes=10)
        assert (row["state"], row["bytes"], row["info"]) == ("done", 10, {"fps": "25"})
        for state in ("started", "failed", "started", "done"):
            task = store.record_task("finetune:c000", "gpu", state, worker_pid=123, engine="ray", seconds=1.5)
        assert (task["attempts"], task["state"], task["worker_pid"], task["engine"]) == (
            2,
            "done",
            123,
            "ray",
        )
        # one-time compute: every ladder size of the cluster, its refine, the video's SR-aware encode
        tasks = {"finetune:c000/c16n2": 2.0, "finetune:c0001": 7.0, "sr_aware_refine:c000": 0.25,
                 "sr_aware:clip": 0.5, "sr_aware:clip-2": 9.0}  # fmt: skip
        for name, secs in tasks.items():
            store.record_task(name, "gpu", "done", seconds=secs)
        assert store.compute_seconds(cluster_id="c000") == 1.5 + 2.0 + 0.25
        assert store.compute_seconds(cluster_id="c000", video_id="clip") == 1.5 + 2.0 + 0.25 + 0.5
        assert store.compute_seconds(video_id="clip-2") == 9.0 and store.compute_seconds() == 0.0
        store.set_setting("cluster", {"method": "kmeans", "k": 2})
        assert store.setting("cluster") == {"method": "kmeans", "k": 2} and store.setting("nope", 7) == 7
        assert store.assignment("clip")["descriptor"] == {"si": 1.5}
        with pytest.raises(StoreError, match="video 'clip' already exists"):
            store.add_video("clip", source="clip.mp4")
    with sqlite3.connect(root / "catalog.sqlite") as db:
        db.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    with pytest.raises(StoreFormatError) as exc:
        Store.open(root)
    assert str(exc.value) == f"{root}: unknown store schema version '9' (this tool reads [1])"


def test_catalog_tool_prints_json_and_a_table(archives, tmp_path, capsys):
    import json

    root = tmp_path / "s"
    with Store.open(root, create=True) as store:
        import_archive(store, archives["b"])
        model = member_of(_manifest(store, "b"), "model", "b")
        model_sha = _manifest(store, "b")["members"][model]["sha256"]
    assert run_cli(_tool("catalog").main, [str(root), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    [video], [cluster] = data["videos"], data["clusters"]
    assert (video["id"], video["cluster"], video["state"]) == ("b", cluster["id"], "done")
    assert video["bytes"] == json.loads((archives["b"] / "manifest.json").read_text())["bytes"]["total"]
    assert set(video["members"]) == {"lr.mp4", model, "audio0.mka"} and cluster["model"] == model_sha
    assert data["store"]["schema_version"] == 1 and data["objects"]["count"] == 4
    assert run_cli(_tool("catalog").main, [str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0] == f"store {root}: schema v1, 1 videos, 1 clusters, 4 objects ({data['objects']['bytes']} B)"
    )
    assert run_cli(_tool("catalog").main, [str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}: not a store (no catalog.sqlite)\n"


def test_committed_v1_store_verifies_and_restores(tmp_path):
    root = tmp_path / "store_v1"
    shutil.copytree(STORE_V1, root)
    report = verify(root)
    assert report.ok and (report.schema_version, report.videos, report.objects) == (1, 1, 4)
    with Store.open(root, lock=False) as store:
        [video] = store.videos()
        source = _manifest(store, video["id"])["source"]
        res = restore_video(store, video["id"], tmp_path / "out.mkv", progress=False)
    assert (res.num_frames, res.width, res.height) == (
        source["num_frames"],
        source["width"],
        source["height"],
    )
    assert (res.num_frames, res.width, res.height) == (4, 64, 48)
    assert len(audio_streams(res.output)) == 1
    assert sum(p.stat().st_size for p in STORE_V1.rglob("*") if p.is_file()) < 300_000


def make_store_v1(out: Path, reds_dir: Path) -> None:
    """Write the committed fixture: archive ``b`` (AAC track) imported into a fresh store at ``out``."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        archive = tiny_archive(reds_dir, Path(tmp), "clip", 160, True)
        with Store.open(out, create=True) as store:
            import_archive(store, archive)
            store.update_video("clip", info={"imported_from": "clip.archive"})
    shutil.rmtree(out / "tmp", ignore_errors=True)


if __name__ == "__main__":  # PYTHONPATH=. python tests/archival/test_store.py --make-v1 tests/data/store_v1
    if len(sys.argv) == 3 and sys.argv[1] == "--make-v1":
        make_store_v1(Path(sys.argv[2]), REPO.parent / "shared" / "data" / "reds_demo_000")
    else:
        sys.exit("usage: python tests/archival/test_store.py --make-v1 OUT_DIR")
