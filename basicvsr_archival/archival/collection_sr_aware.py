"""SR-aware encoding in a collection (``codec.sr_aware``): per-segment CRFs chosen with the cluster's model.

The order of issue 15: every cluster model is trained on the uniform-CRF streams (``_train``); then

1. each video of a cluster with its model gets a task (:func:`sr_aware_task`, CPU) that rebuilds the
   cluster model from its stored objects (the delta model decoded against the base object, as a
   restore does) and re-encodes the video's LR stream with it (:func:`.sr_aware.sr_aware_encode`,
   budget: the uniform stream's payload); the driver stores the new stream as the video's LR object
   (``info.lr_object``), records ``info.sr_aware`` and removes the uniform LR object when nothing
   else refers to it;
2. with ``refine_iters`` > 0, once per cluster, after its videos are SR-aware: ``refine_iters``
   iterations of fine-tuning from the stored cluster model on the decoded SR-aware streams
   (:func:`refine_task`); the refined model replaces the cluster's model object (the old one is
   removed when unreferenced). Videos added to the cluster later are encoded with the refined model.

Resuming: a video with ``info.sr_aware`` and a cluster with ``settings.sr_aware_refine`` are done;
a task's work dir (``STORE/work/videos/<id>/sr_aware/``, ``STORE/work/clusters/<id>/sr_aware_refine/``)
keeps a finished result, so a task whose record the driver lost is not redone. A failed video or
cluster refine marks its videos ``failed``: a resumed run prepares them again (from their work
dirs) and retries.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from basicvsr_archival.models.backends import apply_backend
from basicvsr_archival.utils.atomic import atomic_path, atomic_write_json

from .collection_tasks import finetune_task
from .engines import Engine
from .job_config import ArchivalConfig, stored_model_config
from .job_state import JobState
from .model_storage import decode_model, encode_model, read_state_dict
from .package import sha256_file
from .pipeline import DECODED_NAME, LR_NAME, SR_AWARE_NAME, _decode_lossless
from .restore import build_model
from .sr_aware import sr_aware_encode

if TYPE_CHECKING:
    from .collection import CollectionResult
    from .collection_config import CollectionSettings
    from .store import Store

SR_DIR = "sr_aware"  # in a video's work dir: the ladder while it runs, the decoded stream, record.json
RECORD_NAME = "record.json"
REFINE_DIR = "sr_aware_refine"  # in a cluster's work dir
START_NAME = "start.pth"


def stored_model_state(cfg: ArchivalConfig, model_path: str, base_path: str) -> dict[str, torch.Tensor]:
    """The cluster model's weights as a restore sees them: the stored object decoded against the base."""
    data = Path(model_path).read_bytes()
    return decode_model(data, cfg.storage.compression, read_state_dict(base_path), model_path)


def _portable(command: list[str]) -> str:
    """The concat command without machine paths: ``ffmpeg``, the list file's name, ``lr.mp4`` as output."""
    args = [str(a) for a in command]
    args[0], args[-1] = "ffmpeg", LR_NAME
    i = args.index("-i") + 1
    args[i] = Path(args[i]).name
    return shlex.join(args)


def sr_aware_task(job: Mapping[str, Any]) -> dict[str, Any]:
    """Re-encode one video's LR stream with per-segment CRFs chosen with its cluster's model (a worker task).

    ``job``: ``cfg``, ``source``, ``work`` (the video's work dir), ``model`` / ``base`` (paths of the
    cluster's model object and the base object), ``model_sha``, ``uniform`` (the uniform LR stream).
    Writes ``WORK/lr_sr_aware.mp4`` (and its FFV1 decode when the cluster model is refined) and
    ``WORK/sr_aware/record.json``; a finished record made with the same model is returned as it is.
    """
    cfg, work = job["cfg"], Path(job["work"])
    out, folder = work / SR_AWARE_NAME, work / SR_DIR
    decoded = folder / DECODED_NAME
    done = folder / RECORD_NAME
    if done.is_file():
        rec = json.loads(done.read_text())
        if (
            rec["model_sha"] == job["model_sha"]
            and out.is_file()
            and sha256_file(out) == rec["sha256"]
            and (not rec.get("decoded") or decoded.is_file())
        ):
            return rec | {"lr": str(out)}
    state = stored_model_state(cfg, job["model"], job["base"])
    model = build_model(stored_model_config(cfg.model), state, str(job["source"]))
    apply_backend(model, "auto")  # the path restores take
    res = sr_aware_encode(
        job["source"], out, cfg.codec, cfg.sr_aware, model, folder,
        max_seq_len=cfg.restore.max_seq_len, overlap=cfg.restore.overlap, uniform=job["uniform"],
    )  # fmt: skip
    rec = {"model_sha": job["model_sha"], "sha256": sha256_file(out), "file_bytes": res.bytes}
    rec |= {"command": _portable(res.command), "segments": res.segments(), "sr_aware": res.to_dict()}
    if cfg.sr_aware.refine_iters:  # what the cluster refine trains on (random access, as prepare's)
        _decode_lossless(JobState(work), out, decoded)
        rec["decoded"] = str(decoded)
    atomic_write_json(done, rec)
    return rec | {"lr": str(out)}


def refine_task(job: Mapping[str, Any]) -> dict[str, Any]:
    """Fine-tune a cluster's stored model ``refine_iters`` iterations on its SR-aware streams (a worker task).

    ``job``: :func:`.collection_tasks.finetune_task`'s, with ``model`` / ``base`` (object paths); the
    start weights are written to ``WORK/start.pth``. Resumable as any cluster fine-tuning.
    """
    cfg, work = job["cfg"], Path(job["work"])
    start = work / START_NAME
    work.mkdir(parents=True, exist_ok=True)
    with atomic_path(start) as tmp:
        torch.save({"state_dict": stored_model_state(cfg, job["model"], job["base"])}, tmp)
    return finetune_task(dict(job) | {"start": str(start)})


def lr_record(info: Mapping[str, Any], cluster: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest ``lr`` entries of an SR-aware video: command, segments, ``sr_aware`` (no timings)."""
    sra = info["sr_aware"]
    record = {k: v for k, v in sra["sr_aware"].items() if k not in ("segments", "seconds")}
    refined = (cluster.get("settings") or {}).get("sr_aware_refine")
    record["refine"] = {"iterations": refined["iterations"]} if refined else None
    return {"command": sra["command"], "segments": sra["segments"], "sr_aware": record}


def sr_aware_stage(
    st: Store,
    eng: Engine,
    cfg: ArchivalConfig,
    settings: CollectionSettings,
    base: Mapping[str, Any],
    result: CollectionResult,
    progress: bool,
) -> None:
    """``codec.sr_aware``: SR-aware encode every trained video not yet done, then refine the clusters."""
    if not cfg.sr_aware.enabled:
        return
    _encode_videos(st, eng, cfg, base, result, progress)
    _drop_uniform_streams(st)
    if cfg.sr_aware.refine_iters:
        _refine_clusters(st, eng, cfg, settings, base, result, progress)


def _encode_videos(
    st: Store, eng: Engine, cfg: ArchivalConfig, base: Mapping[str, Any], result: CollectionResult,
    progress: bool,
) -> None:  # fmt: skip
    """Run :func:`sr_aware_task` for every prepared video of a trained cluster without ``info.sr_aware``."""
    from .collection import _task_done, _work

    models = {c["id"]: c["model_sha"] for c in st.clusters() if c["state"] == "done"}
    todo = {
        v["id"]: v
        for v in st.videos()
        if v["state"] == "prepared" and v["cluster_id"] in models and "sr_aware" not in v["info"]
    }
    jobs = {}
    for vid, v in todo.items():
        model = models[v["cluster_id"]]
        jobs[vid] = {
            "cfg": cfg, "source": v["source"], "work": str(_work(st, "videos", vid)),
            "model": str(st.object_path(model)), "model_sha": model,
            "base": str(st.object_path(base["sha256"])),
            "uniform": str(st.object_path(v["info"]["lr_object"])),
        }  # fmt: skip
    for res in eng.map(sr_aware_task, jobs, kind="cpu", desc="SR-aware encode", progress=progress):
        _task_done(st, f"sr_aware:{res.key}", "sr_aware", res, eng.name)
        result.ran.append(f"sr_aware:{res.key}")
        if res.error:
            st.update_video(res.key, state="failed")
            result.failed[res.key] = res.error
            continue
        rec, info = res.value, dict(todo[res.key]["info"])
        keep = {k: rec[k] for k in ("model_sha", "file_bytes", "command", "segments", "sr_aware")}
        if rec.get("decoded"):
            keep["decoded"] = str(Path(rec["decoded"]).relative_to(st.root))  # the store may move
        info["sr_aware"] = keep | {"uniform_object": info["lr_object"]}
        info["lr_object"] = st.put_file(rec["lr"], "lr")
        st.update_video(res.key, info=info)


def _drop_uniform_streams(st: Store) -> None:
    """Remove the uniform LR objects that SR-aware streams replaced, unless something still refers to them."""
    videos = st.videos()
    replaced = {v["info"]["sr_aware"]["uniform_object"] for v in videos if "sr_aware" in (v["info"] or {})}
    _remove_unreferenced(st, replaced)


def _remove_unreferenced(st: Store, shas: set[str]) -> list[str]:
    """Delete those objects nothing refers to (manifests, catalog roots, a video's LR or audio object)."""
    if not shas:
        return []
    used = set(st.references())
    for v in st.videos():
        info = v["info"] or {}
        used.add(info.get("lr_object"))
        used.update(s.get("object") for s in (info.get("audio") or {}).get("streams", []))
    gone = sorted(s for s in shas - used if st.object_row(s) is not None or st.object_path(s).exists())
    for sha in gone:
        st.object_path(sha).unlink(missing_ok=True)
        st.delete_object_row(sha)
    return gone


def _refine_clusters(
    st: Store,
    eng: Engine,
    cfg: ArchivalConfig,
    settings: CollectionSettings,
    base: Mapping[str, Any],
    result: CollectionResult,
    progress: bool,
) -> None:
    """Refine once every trained cluster whose prepared videos are all SR-aware; replace its model object."""
    from .collection import _task_done, _work

    members = st.videos_by_cluster("prepared")
    jobs, n = {}, cfg.sr_aware.refine_iters
    for c in st.clusters():
        vids = members.get(c["id"], [])
        if c["state"] != "done" or "sr_aware_refine" in (c["settings"] or {}) or not vids:
            continue
        if any("decoded" not in v["info"].get("sr_aware", {}) for v in vids):
            continue
        jobs[c["id"]] = {
            "cfg": cfg, "work": str(_work(st, "clusters", c["id"], REFINE_DIR)),
            "pairs": [(str(st.root / v["info"]["sr_aware"]["decoded"]), v["source"]) for v in vids],
            "iters_per_video": n, "max_iters": n, "threads": settings.threads,
            "max_seconds": settings.max_seconds, "model": str(st.object_path(c["model_sha"])),
            "base": str(st.object_path(base["sha256"])),
        }  # fmt: skip
    base_weights = read_state_dict(st.object_path(base["sha256"])) if jobs else None
    for res in eng.map(refine_task, jobs, kind="gpu", desc="SR-aware refine", progress=progress):
        _task_done(st, f"sr_aware_refine:{res.key}", "sr_aware_refine", res, eng.name)
        result.ran.append(f"sr_aware_refine:{res.key}")
        if res.error:  # its videos are prepared again and retried by a resumed run
            for v in members[res.key]:
                st.update_video(v["id"], state="failed")
                result.failed[v["id"]] = f"cluster {res.key} SR-aware refine: {res.error}"
            continue
        cluster = st.cluster(res.key)
        state = read_state_dict(res.value["checkpoint"])
        data, summary = encode_model(state, cfg.storage, base_weights, base["sha256"])
        refine = {"iterations": n, "from_model": cluster["model_sha"], "finetune": res.value["stats"]}
        info = cluster["settings"] | {"storage": summary, "sr_aware_refine": refine}
        st.update_cluster(res.key, model_sha=st.put_bytes(data, "model"), settings=info)
        _remove_unreferenced(st, {refine["from_model"]})
