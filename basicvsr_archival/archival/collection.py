"""Archive a collection of videos into a store: one fine-tuned model shared by each content cluster.

Stages (each recorded in the store's catalog, so a killed run continues with ``resume=True``
without redoing finished videos or clusters):

1. register: every listed video gets an id (its file stem, made unique); a missing one is named
   and left out, the rest go on;
2. prepare (engine tasks, CPU): probe, LR encode, decode, audio and the content descriptor of
   each video (:func:`.collection_tasks.prepare_task`); the driver stores the LR stream and the
   audio streams as objects;
3. cluster (driver): at the first run every prepared video is assigned (:func:`.cluster.assign_clusters`,
   fixed in the catalog with the reason); videos added later go to the nearest cluster or a new one;
4. train (engine tasks, GPU when the cluster has one): one model per cluster on clips of all its
   videos (:func:`.collection_tasks.finetune_task`), stored once as a delta against the base model,
   which is itself an object of the store;
5. SR-aware encode (``codec.sr_aware``, engine tasks): each video's LR stream re-encoded with
   per-segment CRFs chosen with its cluster's model, which may be refined on them
   (:mod:`.collection_sr_aware`); the uniform LR objects leave the store;
6. package (driver): each video's manifest (the single-video archive manifest, its members named
   by their object hashes; no timestamps, timings or paths) becomes an object.

Only this driver writes the catalog and the objects; tasks return records (the catalog keeps each
task's attempts and worker pid). Work files live in ``STORE/work/`` (needed to resume; a Ray
cluster needs STORE on a path every node sees).
"""

from __future__ import annotations

import io
import json
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from basicvsr_archival.utils.ffmpeg import PathLike

from . import store as store_mod
from .cluster import add_to_state, assign_clusters, cluster_state
from .collection_config import CollectionSettings, load_collection_config
from .collection_sr_aware import lr_record, sr_aware_stage
from .collection_tasks import base_state, finetune_task, prepare_task
from .cost import sr_archive_bytes
from .engines import Engine, TaskResult, make_engine
from .finetune import cluster_iters
from .job_config import ArchivalConfig, stored_model_config
from .model_storage import encode_model, read_state_dict
from .package import ArchiveError, build_manifest
from .pipeline import LR_NAME, tool_record
from .restore import restore_backend
from .size_ladder import train_ladder

BASE_NAME = "base.pth"
WORK_DIR = "work"


class CollectionError(ArchiveError):
    """A collection run cannot start (bad store, changed settings) or finished with failures."""


@dataclass
class CollectionResult:
    """What a run did: the store, per-video states, the failures (one line each) and the tasks run."""

    store: Path
    videos: dict[str, str]
    failed: dict[str, str] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if every listed video is archived."""
        return not self.failed


def archive_collection(
    config: PathLike | Mapping[str, Any],
    videos: Sequence[PathLike],
    store: PathLike,
    *,
    labels: Mapping[str, str] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    resume: bool = False,
    cfg_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> CollectionResult:
    """Archive ``videos`` into the store at ``store`` following ``config`` (see the module docstring).

    ``labels`` maps a source path (as given) to its label (``cluster.method="label"``). An existing
    store is refused unless ``resume`` (which continues a run, or adds the listed videos not yet in it).
    """
    cfg, settings = load_collection_config(config, cfg_options)
    root = Path(store)
    if store_mod.is_store(root) and not resume:
        raise CollectionError(f"{root}: store exists; pass --resume to continue it or to add videos")
    result = CollectionResult(root, {})
    with store_mod.Store.open(root, create=True) as st:
        _check_settings(st, cfg, settings)
        scratch = root / WORK_DIR / "engine"  # attempt markers: on the store, which every node sees
        with make_engine(engine, ray_address, settings.max_retries, settings.threads, scratch) as eng:
            ids = _register(st, videos, labels or {}, result)
            _prepare(st, eng, cfg, settings, ids, result, progress)
            _assign(st, settings)
            base = _put_base(st, cfg)
            _train(st, eng, cfg, settings, base, result, progress)
            sr_aware_stage(st, eng, cfg, settings, base, result, progress)
            _package(st, cfg, base, result)
        result.videos = {v["id"]: v["state"] for v in st.videos() if v["id"] in ids}
    return result


def _check_settings(st: store_mod.Store, cfg: ArchivalConfig, settings: CollectionSettings) -> None:
    """Record the run's settings in a new store; refuse a store made with other settings."""
    wanted = {"archival_fingerprint": cfg.fingerprint(), "collection": settings.to_dict()}
    if cfg.size_ladder is not None:  # only when set: stores made before the ladder still resume
        wanted["size_ladder"] = cfg.size_ladder.to_dict()
    wanted["collection"].pop("max_retries", None)
    recorded = st.setting("run")
    if recorded is None:
        st.set_setting("run", wanted)
        st.set_setting("config", cfg.to_dict())
    elif recorded != json.loads(json.dumps(wanted)):
        raise CollectionError(f"{st.root}: was made with other settings; use another store")


def _register(
    st: store_mod.Store, videos: Sequence[PathLike], labels: Mapping[str, str], result: CollectionResult
) -> list[str]:
    """Give every listed video an id (kept across runs); missing files are named in ``result.failed``."""
    known = {v["source"]: v["id"] for v in st.videos()}
    ids: list[str] = []
    for video in videos:
        src = Path(video)
        key = str(src.resolve())
        if key in known:
            ids.append(known[key])
            continue
        if not src.is_file():
            result.failed[str(src)] = f"{src}: video not found"
            continue
        vid = st.unique_video_id(src)
        st.add_video(vid, source=key, label=labels.get(str(video)), state="registered")
        known[key] = vid
        ids.append(vid)
    return ids


def _work(st: store_mod.Store, *parts: str) -> Path:
    """A task's work dir under ``STORE/work/`` (kept for resuming; not part of the store's objects)."""
    return st.root.joinpath(WORK_DIR, *parts)


def _task_done(st: store_mod.Store, name: str, kind: str, res: TaskResult, engine: str) -> None:
    """Record a finished (or failed) task with its attempts and worker pid."""
    st.record_task(
        name, kind, "failed" if res.error else "done", worker_pid=res.worker_pid, engine=engine,
        attempts=res.attempts, seconds=res.seconds, error=res.error,
    )  # fmt: skip


def _prepare(
    st: store_mod.Store,
    eng: Engine,
    cfg: ArchivalConfig,
    settings: CollectionSettings,
    ids: list[str],
    result: CollectionResult,
    progress: bool,
) -> None:
    """Run the per-video preparation tasks of videos not yet prepared; store their LR and audio objects."""
    todo = [v for v in st.videos() if v["id"] in ids and v["state"] in ("registered", "failed")]
    jobs = {
        v["id"]: {"cfg": cfg, "source": v["source"], "work": str(_work(st, "videos", v["id"]))} for v in todo
    }
    for res in eng.map(prepare_task, jobs, kind="cpu", desc="prepare", progress=progress):
        _task_done(st, f"prepare:{res.key}", "prepare", res, eng.name)
        result.ran.append(f"prepare:{res.key}")
        if res.error:
            st.update_video(res.key, state="failed")
            result.failed[res.key] = res.error
            continue
        rec = res.value
        lr_sha = st.put_file(rec["lr"], "lr")
        for s in rec["audio"]["streams"]:
            s["object"] = st.put_file(Path(rec["lr"]).parent / s["member"], "audio")
        info = {k: rec[k] for k in ("probe", "encode_lr", "audio", "descriptor")} | {"lr_object": lr_sha}
        info["encode_lr"]["command"] = _portable_command(info["encode_lr"]["command"])
        info["decoded"] = str(Path(rec["decoded"]).relative_to(st.root))  # the store may move
        st.update_video(res.key, state="prepared", info=info, source_sha256=rec["probe"]["sha256"])


def _assign(st: store_mod.Store, settings: CollectionSettings) -> None:
    """Fix the cluster of every prepared video without one (first run: all; later: nearest or new)."""
    assigned = {a["video_id"] for a in st.assignments()}
    new = {v["id"]: v for v in st.videos() if v["state"] == "prepared" and v["id"] not in assigned}
    if not new:
        return
    descriptors = {vid: v["info"]["descriptor"] for vid, v in new.items()}
    labels = {vid: v["label"] for vid, v in new.items() if v["label"] is not None}
    state = st.setting("cluster_state")
    if state is None:
        assignments = assign_clusters(descriptors, settings.cluster, labels)
        state = cluster_state(descriptors, assignments, settings.cluster, labels)
    else:
        assignments = [add_to_state(state, vid, d, labels.get(vid)) for vid, d in sorted(descriptors.items())]
    st.set_setting("cluster_state", state)
    for a in assignments:
        if st.cluster(a.cluster_id) is None:
            st.add_cluster(a.cluster_id, method=settings.cluster.method, state="pending")
        st.set_assignment(a.video_id, a.cluster_id, descriptor=descriptors[a.video_id], distance=a.distance,
                          reason=a.reason)  # fmt: skip
        st.update_video(a.video_id, cluster_id=a.cluster_id)


def _put_base(st: store_mod.Store, cfg: ArchivalConfig) -> dict[str, Any]:
    """Store the base model (checkpoint file, or the seeded initialisation) once; its manifest record."""
    recorded = st.setting("base_record")
    if recorded is not None:
        return recorded
    buf = io.BytesIO()
    torch.save({"state_dict": base_state(cfg)}, buf)
    data = buf.getvalue()
    record = {"name": BASE_NAME, "sha256": st.put_bytes(data, "base_model"), "bytes": len(data)}
    st.set_setting("base_model", record["sha256"])
    st.set_setting("base_record", record)
    return record


def _train(
    st: store_mod.Store,
    eng: Engine,
    cfg: ArchivalConfig,
    settings: CollectionSettings,
    base: Mapping[str, Any],
    result: CollectionResult,
    progress: bool,
) -> None:
    """Fine-tune every cluster without a model (one task each) and store each model once, as a delta."""
    members = st.videos_by_cluster("prepared")
    jobs = {}
    for c in st.clusters():
        if c["state"] == "done" or not members.get(c["id"]):
            continue
        pairs = [(str(st.root / v["info"]["decoded"]), v["source"]) for v in members[c["id"]]]
        jobs[c["id"]] = {
            "cfg": cfg, "pairs": pairs, "work": str(_work(st, "clusters", c["id"])),
            "iters_per_video": settings.iters_per_video, "max_iters": settings.max_iters,
            "threads": settings.threads, "max_seconds": settings.max_seconds,
        }  # fmt: skip
    if cfg.size_ladder is not None and jobs:  # one task per (cluster, size); the cheapest good size is kept
        failed = train_ladder(st, eng, cfg, jobs, members, base, lambda r: _finetune_done(st, eng, r, result),
                              progress)  # fmt: skip
        for cid, error in failed.items():
            _cluster_failed(st, cid, members[cid], error, result)
        return
    base_weights = read_state_dict(st.object_path(base["sha256"])) if jobs else None
    for res in eng.map(finetune_task, jobs, kind="gpu", desc="fine-tune", progress=progress):
        _finetune_done(st, eng, res, result)
        if res.error:
            _cluster_failed(st, res.key, members[res.key], res.error, result)
            continue
        state = read_state_dict(res.value["checkpoint"])
        data, summary = encode_model(state, cfg.storage, base_weights, base["sha256"])
        sha = st.put_bytes(data, "model")
        iterations = cluster_iters(settings.iters_per_video, len(members[res.key]), settings.max_iters)
        info = {"iterations": iterations, "storage": summary, "finetune": res.value["stats"]}
        st.update_cluster(res.key, state="done", model_sha=sha, settings=info)


def _finetune_done(st: store_mod.Store, eng: Engine, res: TaskResult, result: CollectionResult) -> None:
    """Record a finished fine-tuning task in the catalog and in ``result.ran``."""
    _task_done(st, f"finetune:{res.key}", "finetune", res, eng.name)
    result.ran.append(f"finetune:{res.key}")


def _cluster_failed(
    st: store_mod.Store, cid: str, members: list[dict[str, Any]], error: str, result: CollectionResult
) -> None:
    """Mark a cluster failed and name the error for each of its videos."""
    st.update_cluster(cid, state="failed")
    for v in members:
        result.failed[v["id"]] = f"cluster {cid}: {error}"


def _package(
    st: store_mod.Store, cfg: ArchivalConfig, base: Mapping[str, Any], result: CollectionResult
) -> None:
    """Write the manifest object of every prepared video whose cluster has its model."""
    clusters = {c["id"]: c for c in st.clusters()}
    for v in st.videos():
        cluster = clusters.get(v["cluster_id"])
        if v["state"] != "prepared" or cluster is None or cluster["state"] != "done":
            continue
        manifest, members = _manifest(v, cluster, cfg, base)
        for m in members.values():
            m["bytes"] = st.object_path(m["sha256"]).stat().st_size
        data = build_manifest(manifest, members)
        sha = st.put_bytes(data, "manifest")
        charged = _charged_bytes(members, len(data), st.cluster_videos(cluster["id"]))
        st.update_video(v["id"], state="done", manifest_sha=sha, bytes=charged)
        result.ran.append(f"package:{v['id']}")


def _charged_bytes(members: Mapping[str, Mapping[str, Any]], manifest_bytes: int, sharing: list[str]) -> int:
    """Bytes charged to a video (:func:`.cost.sr_archive_bytes`; its audio streams count as LR bytes)."""
    own = sum(m["bytes"] for m in members.values() if m["role"] != "model")
    model = sum(m["bytes"] for m in members.values() if m["role"] == "model")
    return round(sr_archive_bytes(own, model, manifest_bytes, max(1, len(sharing))))


def _portable_command(command: str) -> str:
    """An encode command without machine paths: ``ffmpeg`` for the binary, ``lr.mp4`` for the output."""
    args = shlex.split(command)
    args[0], args[-1] = "ffmpeg", LR_NAME
    return shlex.join(args)


def _manifest(
    video: Mapping[str, Any], cluster: Mapping[str, Any], cfg: ArchivalConfig, base: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A video's archive manifest (no timestamps, timings or paths) and its members (name -> entry)."""
    info, src = video["info"], Path(video["source"])
    enc, probe = info["encode_lr"], info["probe"]
    command = enc["command"].replace(str(src), src.name)
    model_member = cfg.storage.member_name
    trained = cluster["settings"]
    manifest = {
        "tool": tool_record(),
        "source": {"name": src.name, "sha256": probe["sha256"], **probe["info"]},
        "lr": {k: enc[k] for k in ("width", "height", "num_frames", "pix_fmt")}
        | {"command": command, "member": LR_NAME}
        | (lr_record(info, cluster) if "sr_aware" in info else {}),
        "model": {
            "member": model_member,
            "config": trained.get("model_config") or stored_model_config(cfg.model),  # ladder: chosen size
            "storage": trained["storage"],
            "base_checkpoint": dict(base) if trained.get("delta_base", True) else None,
            "base_allow_extra_keys": cfg.base_allow_extra_keys,
        },
        "settings": cfg.to_dict(),
        "restore_backend": restore_backend(),
        "finetune": {"cluster": cluster["id"], "iterations": trained["iterations"]},
    }
    streams = [
        {k: v for k, v in s.items() if k not in ("file_bytes", "object")} for s in info["audio"]["streams"]
    ]
    manifest["audio"] = {"dropped": info["audio"]["dropped"], "streams": streams}
    members = {LR_NAME: {"role": "lr_bitstream", "sha256": info["lr_object"]}}
    members[model_member] = {"role": "model", "sha256": cluster["model_sha"]}
    for s in info["audio"]["streams"]:
        members[s["member"]] = {"role": "audio", "sha256": s["object"]}
    return manifest, members
