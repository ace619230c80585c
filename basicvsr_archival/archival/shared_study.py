"""Shared-model study: how much of the per-video models' gain one model per cluster of N videos keeps.

For a list of videos and cluster sizes (e.g. 1, 2, 4, all) the videos are archived as a collection
(:func:`.collection.archive_collection`, one store per size) with one fine-tuned model per cluster:
size 1 is ``per_video`` (each video its own model), a size >= the number of videos is ``single``,
any other size ``N`` is ``kmeans`` with ``k = ceil(videos / N)`` and at most ``N`` videos per
cluster. The fine-tuning budget is the config's ``cluster`` section: ``min(iters_per_video x
videos, max_iters)`` iterations per cluster, so ``max_iters = 4/3 x iters_per_video`` gives clusters
of 4 a third more than one per-video model (fine-tuning seconds per video fall 3x).

Measured per video (against the study's source, cropped as in :mod:`.study`): the video restored
from each store by id (its cluster's model), and once with the base model alone (PSNR / SSIM / VMAF);
the bytes charged to it (``lr + model / videos sharing it + manifest``, :func:`.cost.sr_archive_bytes`,
the catalog's ``bytes``); fine-tuning seconds per video (the cluster tasks' seconds over the videos).

Analysis (:func:`analyse_shared`), per size: means over the videos, and the **share of the per-video
gain kept**::

    share(N) = (PSNR(N) - PSNR(base)) / (PSNR(1) - PSNR(base))      (means over the videos)

counted only when the per-video models gain at least ``MIN_GAIN_DB`` over the base. The TCO per video
of each size (cheapest tier, :class:`.cost.CostModel` with the study's prices and horizon) is priced
at a few access intervals, next to the original.

Resumable: each store resumes (:mod:`.collection`), each measurement is a JSON file under
``WORK/shared/`` written atomically and never recomputed; ``WORK/shared/shared_state.json`` refuses a
work dir made with other measurement settings.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import shutil
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from basicvsr_archival.utils.ffmpeg import PathLike, probe_video

from . import store as store_mod
from .collection import archive_collection
from .cost import ArchiveScenario, CostModel
from .study import (
    _base_checkpoints,
    _measure,
    _read_json,
    _video_ids,
    measurement_fingerprint,
    prepare_source,
)
from .study_analysis import write_json_atomic
from .study_config import Study, StudyError
from .throughput import ThroughputProfile, load_profile

MIN_GAIN_DB = 0.3
INTERVALS_DAYS = (30.0, 365.0, math.inf)  # TCO plotted at monthly, yearly and no retrievals
STATE_NAME = "shared_state.json"


def parse_sizes(text: str) -> tuple[int | str, ...]:
    """Cluster sizes from ``"1,2,4,all"`` (ints >= 1 or ``all``), sorted, ``all`` last."""
    sizes: set[int] = set()
    has_all = False
    for part in str(text).split(","):
        part = part.strip().lower()
        if part == "all":
            has_all = True
        elif part.isdigit() and int(part) >= 1:
            sizes.add(int(part))
        else:
            raise StudyError(f"--cluster-sizes: {part!r} is not an int >= 1 or 'all'")
    return (*sorted(sizes), *(("all",) if has_all else ()))


def cluster_options(size: int | str, n_videos: int) -> dict[str, Any]:
    """The collection's ``cluster`` settings for clusters of ``size`` videos (``all``: one cluster)."""
    n = n_videos if size == "all" else int(size)
    if n <= 1:
        return {"cluster.method": "per_video", "cluster.k": None, "cluster.max_videos_per_cluster": None}
    if n >= n_videos:
        return {"cluster.method": "single", "cluster.k": None, "cluster.max_videos_per_cluster": None}
    k = math.ceil(n_videos / n)
    return {"cluster.method": "kmeans", "cluster.k": k, "cluster.max_videos_per_cluster": n}


def _fingerprint(study: Study, scale: int, crf: int, base: Path | None) -> tuple[str, dict[str, Any]]:
    """SHA-256 of the measurement settings: the study's, the point, the cluster budget and the base."""
    _, settings = measurement_fingerprint(study)
    cluster = {
        k: v
        for k, v in dict(study.cfg.get("cluster") or {}).items()
        if k not in ("method", "k", "max_videos_per_cluster")
    }
    d = {
        "study": settings,
        "scale": scale,
        "crf": crf,
        "cluster": cluster,
        "base": hashlib.sha256(base.read_bytes()).hexdigest() if base else None,
    }
    d = json.loads(json.dumps(d, sort_keys=True, default=str))
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest(), d


def _check_state(work: Path, fingerprint: str, settings: Mapping[str, Any]) -> None:
    """Create the state file or refuse a work dir made with other settings."""
    path = work / STATE_NAME
    state = _read_json(path) if path.exists() else None
    if path.exists() and state is None:
        raise StudyError(f"{path}: unreadable shared-model study state; use another -o")
    if state is not None and state.get("fingerprint") != fingerprint:
        raise StudyError(f"{work}: holds a shared-model study made with other settings; use another -o")
    if state is None:
        write_json_atomic({"fingerprint": fingerprint, "settings": settings}, path)


def _point_config(study: Study, scale: int, crf: int, base: Path | None) -> dict[str, Any]:
    """The collection config of the study's point: its codec scale / CRF and the base checkpoint."""
    raw = copy.deepcopy(dict(study.cfg))
    raw["codec"] = {**raw.get("codec", {}), "scale": scale, "crf": crf, "bitrate": None}
    raw["model"] = copy.deepcopy(raw.get("model", {}))
    raw["model"]["generator"] = {**raw["model"].get("generator", {}), "upscale_factor": scale}
    raw["base_checkpoint"] = str(base) if base else None
    for section in ("study", "tco", "cost"):
        raw.pop(section, None)
    return raw


def _measure_restore(
    st: store_mod.Store, vid: str, source: Path, tmp: Path, vmaf: bool, which: str
) -> dict[str, Any]:
    """Restore ``vid`` (cluster model, or ``which='base'``) losslessly in a fresh ``tmp`` and measure it."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    out = tmp / f"{vid}_{which}.mkv"
    res = store_mod.restore_video(st, vid, out, overwrite=True, progress=False, lossless=True, which=which)
    m = _measure(out, source, probe_video(source), tmp, vmaf)
    out.unlink(missing_ok=True)
    return {**m, "restore_seconds": res.seconds, "device": res.device}


def _lr_size(source: Path, scale: int) -> list[int]:
    """``[width, height]`` of the LR stream of ``source`` at ``scale``."""
    info = probe_video(source)
    return [info.width // scale, info.height // scale]


def _size_record(st: store_mod.Store, ids: Sequence[str]) -> dict[str, Any]:
    """Clusters, their sizes, iterations and fine-tuning seconds of one store (from its catalog)."""
    clusters = []
    for c in st.clusters():
        members = [v for v in st.cluster_videos(c["id"]) if v in ids]
        clusters.append(
            {
                "id": c["id"],
                "videos": members,
                "model": c["model_sha"],
                "iterations": (c["settings"] or {}).get("iterations"),
                "finetune_seconds": st.compute_seconds(cluster_id=c["id"]),
            }
        )
    return {"clusters": clusters}


def run_shared_study(
    study: Study,
    videos: Sequence[PathLike],
    work_dir: PathLike,
    sizes: Sequence[int | str] = (1, 2, 4, "all"),
    *,
    crf: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Archive ``videos`` once per cluster size, restore and measure every video; returns the measurements.

    The point is the study's ``tco.scale`` (or first scale) and ``crf`` (default: the middle CRF of
    ``study.crfs``).
    """
    work = Path(work_dir)
    srcs = [Path(v) for v in videos]
    if len(srcs) < 2:
        raise StudyError("the shared-model study needs at least 2 videos")
    for v in srcs:
        if not v.is_file():
            raise StudyError(f"{v}: video not found")
    s = study.settings
    scale = int(study.tco.scale or s.scales[0])
    crf = int(crf if crf is not None else s.crfs[len(s.crfs) // 2])
    shared = work / "shared"
    shared.mkdir(parents=True, exist_ok=True)
    ids = _video_ids(srcs)
    sources = {}
    for vid, src in zip(ids, srcs):
        folder = work / "videos" / vid
        sources[vid], _ = prepare_source(src, folder / "source_cropped.mkv", [scale], s.crop_multiple)
    base = (
        _base_checkpoints(study, work, progress)[scale]
        if study.cfg.get("base_checkpoint") or (s.base_pretrain)
        else None
    )
    fingerprint, settings = _fingerprint(study, scale, crf, base)
    _check_state(shared, fingerprint, settings)
    raw = _point_config(study, scale, crf, base)
    by_source = {str(p.resolve()): vid for vid, p in sources.items()}
    labels = [str(x) for x in sizes]
    result: dict[str, Any] = {
        "scale": scale,
        "crf": crf,
        "videos": ids,
        "sizes": {},
        "base": {},
        "original_bytes": {v: srcs[i].stat().st_size for i, v in enumerate(ids)},
        "lr_sizes": {v: _lr_size(p, scale) for v, p in sources.items()},
        "fingerprint": fingerprint,
    }
    for size, label in zip(sizes, labels):
        root = shared / f"size_{label}"
        store_dir = root / "store"
        opts = cluster_options(size, len(ids))
        log(f"shared-model study: cluster size {label} ({opts['cluster.method']})")
        run = archive_collection(
            raw,
            list(sources.values()),
            store_dir,
            engine=engine,
            ray_address=ray_address,
            resume=store_mod.is_store(store_dir),
            cfg_options=opts,
            progress=progress,
        )
        if not run.ok:
            raise StudyError(
                f"{store_dir}: {len(run.failed)} video(s) not archived: {next(iter(run.failed.values()))}"
            )
        result["sizes"][label] = _measure_size(
            st_root=store_dir,
            root=root,
            by_source=by_source,
            sources=sources,
            vmaf=s.vmaf,
            progress=progress,
            result=result,
            with_base=base is not None,
        )
    return result


def _measure_size(
    st_root: Path,
    root: Path,
    by_source: Mapping[str, str],
    sources: Mapping[str, Path],
    vmaf: bool,
    progress: bool,
    result: dict[str, Any],
    with_base: bool,
) -> dict[str, Any]:
    """Restore and measure every video of one store (kept per video); the base once per video."""
    tmp = root / ".tmp"
    with store_mod.open_store_or_error(st_root) as st:
        store_ids = {by_source[v["source"]]: v["id"] for v in st.videos()}
        record = _size_record(st, list(store_ids.values()))
        per_video: dict[str, Any] = {}
        for vid in tqdm(sorted(store_ids), desc=f"measure {root.name}", unit="video", disable=not progress):
            sid = store_ids[vid]
            row = st.video(sid)
            path = root / "videos" / f"{vid}.json"
            rec = _read_json(path)
            if rec is None or rec.get("manifest") != row["manifest_sha"]:
                rec = _measure_restore(st, sid, sources[vid], tmp, vmaf, "archive")
                rec.update(manifest=row["manifest_sha"], bytes=int(row["bytes"]), cluster=row["cluster_id"])
                write_json_atomic(rec, path)
            per_video[vid] = rec
            base_path = root.parent / "base" / f"{vid}.json"
            if with_base and vid not in result["base"]:
                brec = _read_json(base_path)
                if brec is None:
                    brec = _measure_restore(st, sid, sources[vid], tmp, vmaf, "base")
                    write_json_atomic(brec, base_path)
                result["base"][vid] = brec
        shutil.rmtree(tmp, ignore_errors=True)
    return {**record, "videos": per_video}


# ------------------------------------------------------------------------------------------ analysis
def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not None (None when none is)."""
    vals = [float(v) for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def analyse_shared(measured: Mapping[str, Any], study: Study) -> dict[str, Any]:
    """Per cluster size: mean quality, bytes and fine-tuning seconds per video, gain share, TCO per video."""
    ids = list(measured["videos"])
    base = {m: _mean([measured["base"].get(v, {}).get(m) for v in ids]) for m in ("psnr", "ssim", "vmaf")}
    profile = load_profile(str(study.tco.throughput_profile)) if study.tco.throughput_profile else None
    rows = []
    for label, size in measured["sizes"].items():
        vids = size["videos"]
        ft = sum(c["finetune_seconds"] for c in size["clusters"])
        row = {
            "size": label,
            "clusters": len(size["clusters"]),
            "mean_cluster_videos": statistics.fmean(len(c["videos"]) for c in size["clusters"]),
            "iterations_per_cluster": [c["iterations"] for c in size["clusters"]],
            "bytes_per_video": _mean([vids[v]["bytes"] for v in ids]),
            "finetune_seconds_per_video": ft / len(ids),
            "restore_seconds_per_video": _mean(
                [_restore_seconds(measured, vids[v], v, study, profile) for v in ids]
            ),
            "restore_seconds_measured_per_video": _mean([vids[v]["restore_seconds"] for v in ids]),
        }
        row.update({m: _mean([vids[v][m] for v in ids]) for m in ("psnr", "ssim", "vmaf")})
        rows.append(row)
    per_video = rows[0] if rows and rows[0]["size"] == "1" else None
    gain = per_video["psnr"] - base["psnr"] if per_video and base["psnr"] is not None else None
    for row in rows:
        kept = None
        if gain is not None and gain >= MIN_GAIN_DB:
            kept = (row["psnr"] - base["psnr"]) / gain
        row["psnr_gain_over_base_db"] = None if base["psnr"] is None else row["psnr"] - base["psnr"]
        row["share_of_per_video_gain"] = kept
        row["tco"] = _tco(row, measured, study)
    return {
        "scale": measured["scale"],
        "crf": measured["crf"],
        "videos": ids,
        "base": base,
        "per_video_gain_db": gain,
        "min_gain_db": MIN_GAIN_DB,
        "rows": rows,
        "horizon_days": study.tco.horizon_days,
    }


def _restore_seconds(
    measured: Mapping[str, Any],
    rec: Mapping[str, Any],
    vid: str,
    study: Study,
    profile: ThroughputProfile | None,
) -> float:
    """A video's restore seconds: from the throughput profile (:mod:`.throughput`) if given, else measured."""
    if profile is None or "lr_sizes" not in measured:
        return float(rec["restore_seconds"])
    w, h = measured["lr_sizes"][vid]
    return profile.generator_restore_seconds(
        study.cfg["model"]["generator"], rec.get("device", "cpu"), study.archival.restore.precision,
        int(rec["frames"]), w, h, int(measured["scale"]),
    )  # fmt: skip


def _tco(row: Mapping[str, Any], measured: Mapping[str, Any], study: Study) -> list[dict[str, Any]]:
    """TCO per video (USD over the horizon, cheapest tier) of the SR archive and the original."""
    original = statistics.fmean(measured["original_bytes"].values())
    cost = _cost(study)
    out = []
    for interval in INTERVALS_DAYS:
        scn = ArchiveScenario(
            original,
            row["bytes_per_video"],
            row["restore_seconds_per_video"],
            interval,
            study.tco.horizon_days,
            row["finetune_seconds_per_video"],
            1,
        )
        cmp = cost.compare(scn)
        out.append(
            {
                "interval_days": interval,
                "sr_usd": cmp.sr.total_usd,
                "original_usd": cmp.original.total_usd,
                "sr_tier": cmp.sr.tier,
                "original_tier": cmp.original.tier,
            }
        )
    return out


def _cost(study: Study) -> CostModel:
    """The study's prices (compute at ``tco.cpu_usd_per_hour`` when set: CPU fine-tuning and restores)."""
    cpu = study.tco.cpu_usd_per_hour
    return study.cost if cpu is None else dataclasses.replace(study.cost, gpu_usd_per_hour=cpu)
