"""Where a storage plan's options come from: a study's ``results.json`` or a store (measured once).

* study dir (:func:`videos_from_study`): the original is the ``full`` point at ``original_crf``
  (default the study's ``tco.original_crf``, else its middle CRF), the SR options every ``sr_finetuned``
  and ``sr_base`` point (model bytes and fine-tuning shared by the study's ``model_shared_by``);
* store (:func:`videos_from_store`): the original is the source file as given (or, with
  ``original_crf``, a full-resolution re-encode at that CRF, measured), the SR option the stored
  archive: bytes charged (catalog), objects one per member with the cluster's model at 1/N, quality
  measured by restoring it against the source (kept in ``PLAN_DIR/measure/<id>.json`` and reused while
  the manifest is the same), restore seconds measured or from a throughput profile, fine-tuning
  seconds = the cluster task's over its videos.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from basicvsr_archival.utils.ffmpeg import probe_video

from . import store as store_mod
from .billing import BilledObject
from .codec import CodecSettings, encode_full
from .plan import METRICS, PlanError, PlanOption, PlanVideo, sr_option_from_point
from .study import _measure, _read_json
from .study_analysis import write_json_atomic
from .throughput import ThroughputProfile

STREAM_ROLES = ("lr_bitstream", "audio")  # members whose bytes grow with the video's length


def videos_from_study(work_dir: Path, original_crf: int | None = None) -> list[PlanVideo]:
    """Plan videos from a study's ``results.json`` (see the module docstring)."""
    path = Path(work_dir) / "results.json"
    res = _read_json(path)
    if res is None or "videos" not in res:
        raise PlanError(f"{path}: no study results (run tools/archival_study.py first)")
    st = res["settings"]
    crfs = st["study"]["crfs"]
    crf = original_crf or st["tco"].get("original_crf") or crfs[len(crfs) // 2]
    shared_by = int(st["tco"].get("model_shared_by") or st["tco"].get("cluster_size") or 1)
    out = []
    for v in res["videos"]:
        full = next((p for p in v["points"] if p["variant"] == "full" and p["crf"] == crf), None)
        if full is None:
            raise PlanError(f"{path}: video {v['id']!r} has no full-resolution point at CRF {crf}")
        original = PlanOption(f"full_crf{crf}", float(full["bytes"]), {m: full.get(m) for m in METRICS})
        sr = [
            sr_option_from_point(p, shared_by if p["variant"] == "sr_finetuned" else 1)
            for p in v["points"]
            if p["variant"] in ("sr_finetuned", "sr_base")
        ]
        out.append(PlanVideo(v["id"], original, tuple(sr)))
    return out


def _measure_cached(path: Path, key: str, run: Any) -> dict[str, Any]:
    """The JSON at ``path`` when its ``key`` matches, else ``run()`` written there (atomic)."""
    rec = _read_json(path)
    if rec is None or rec.get("key") != key:
        rec = {**run(), "key": key}
        write_json_atomic(rec, path)
    return rec


def _store_option(
    st: store_mod.Store, row: dict[str, Any], manifest: dict[str, Any], measure_dir: Path, vmaf: bool,
    profile: ThroughputProfile | None,
) -> PlanOption:  # fmt: skip
    """A store video's SR archive as a plan option (quality measured against its source)."""
    src = Path(row["source"])
    if not src.is_file():
        raise PlanError(f"{src}: source of store video {row['id']!r} not found (needed to measure quality)")
    tmp = measure_dir / f".tmp-{row['id']}"

    def run() -> dict[str, Any]:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            res = store_mod.restore_video(
                st, row["id"], tmp / "sr.mkv", overwrite=True, progress=False, lossless=True
            )
            return {
                **_measure(tmp / "sr.mkv", src, probe_video(src), tmp, vmaf),
                "restore_seconds": res.seconds,
                "device": res.device,
            }
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    rec = _measure_cached(measure_dir / f"{row['id']}.json", row["manifest_sha"], run)
    sharing = max(1, len(st.cluster_videos(row["cluster_id"])))
    objects = []
    for entry in manifest["members"].values():
        size = st.object_path(entry["sha256"]).stat().st_size
        share = 1.0 / sharing if entry["role"] == "model" else 1.0
        objects.append(BilledObject(float(size), share, grows=entry["role"] in STREAM_ROLES))
    objects.append(BilledObject(float(st.object_path(row["manifest_sha"]).stat().st_size)))
    restore_s = float(rec["restore_seconds"])
    if profile is not None:
        lr, settings = manifest["lr"], manifest["settings"]
        restore_s = profile.generator_restore_seconds(
            manifest["model"]["config"]["generator"], rec["device"], settings["restore"]["precision"],
            int(lr["num_frames"]), int(lr["width"]), int(lr["height"]), int(settings["codec"]["scale"]),
        )  # fmt: skip
    return PlanOption(
        "sr_archive",
        sum(o.nbytes * o.share for o in objects),
        {m: rec.get(m) for m in METRICS},
        restore_s,
        st.compute_seconds(cluster_id=row["cluster_id"]) / sharing + st.compute_seconds(video_id=row["id"]),
        tuple(objects),
        rec["device"],
    )


def _store_original(
    row: dict[str, Any], manifest: dict[str, Any], measure_dir: Path, crf: int | None, vmaf: bool
) -> PlanOption:
    """The source file as given, or its full-resolution re-encode at ``crf`` (measured, kept)."""
    src = Path(row["source"])
    if crf is None:
        return PlanOption("source", float(src.stat().st_size), {"psnr": float("inf"), "vmaf": None})
    codec = CodecSettings.from_dict(manifest["settings"]["codec"])
    out = measure_dir / f"{row['id']}_full_crf{crf}.mp4"

    def run() -> dict[str, Any]:
        res = encode_full(src, out, replace(codec, crf=crf, bitrate=None))
        return {**_measure(out, src, probe_video(src), measure_dir, vmaf), "bytes": res.bytes}

    rec = _measure_cached(
        measure_dir / f"{row['id']}_full_crf{crf}.json", f"{row['source_sha256']}:{crf}", run
    )
    return PlanOption(f"full_crf{crf}", float(rec["bytes"]), {m: rec.get(m) for m in METRICS})


def videos_from_store(
    root: Path,
    plan_dir: Path,
    *,
    original_crf: int | None = None,
    vmaf: bool = False,
    profile: ThroughputProfile | None = None,
    progress: bool = True,
) -> list[PlanVideo]:
    """Plan videos from every archived video of a store (see the module docstring)."""
    measure_dir = Path(plan_dir) / "measure"
    measure_dir.mkdir(parents=True, exist_ok=True)
    out = []
    with store_mod.open_store_or_error(root) as st:
        rows = [v for v in st.videos() if v["state"] == "done"]
        if not rows:
            raise PlanError(f"{root}: no archived video in the store")
        for row in tqdm(rows, desc="measure", unit="video", disable=not progress):
            manifest = st.read_manifest(row["manifest_sha"], f"video {row['id']} manifest")
            sr = _store_option(st, row, manifest, measure_dir, vmaf, profile)
            original = _store_original(row, manifest, measure_dir, original_crf, vmaf)
            out.append(PlanVideo(row["id"], original, (sr,)))
    return out
