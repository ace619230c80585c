"""Does SR archival pay off? A rate-distortion ladder per video, BD-rates and TCO curves.

For every video and every ladder point (CRF x scale from the study config) four options are measured
against the original (the source, centre-cropped to a size every scale divides when needed):

* ``full``: the original encoded at full resolution (:func:`codec.encode_full`) at the CRF;
* ``bicubic``: the LR encode upscaled with bicubic interpolation (no model);
* ``sr_base``: the LR encode restored with the base model, no fine-tuning;
* ``sr_finetuned``: the archive of :func:`pipeline.run_archive_job` (LR encode + content-aware model
  fine-tuned on that LR stream + manifest) restored with :func:`restore.restore_archive`.

Bytes per video (:func:`study_analysis.charged_bytes`): ``full`` the encode; ``bicubic`` the LR stream;
``sr_base`` LR + manifest (the base checkpoint is stored once for the whole archive: 0 per video);
``sr_finetuned`` LR + model / ``model_shared_by`` + manifest. The model is counted **per point**: each
(scale, CRF) point has its own model, fine-tuned on that point's decoded LR stream, because that is
what its archive stores; ``model_shared_by`` (default the cluster size) divides it when one model
serves a cluster of similar videos, as in Neural Cloud Storage (HotStorage '23); here it is only a
divisor: :mod:`.shared_study` (``tools/archival_study.py --cluster-sizes``) trains, stores and
restores the shared models and measures what they keep. Seconds per point:
``encode`` (LR or full encode), ``finetune`` (the archive job's fine-tuning stage, wall clock),
``restore`` (what a retrieval runs: decode for ``full``, upscale or SR + writing the video otherwise).
Quality: PSNR / SSIM (RGB, 8-bit, frame mean) and VMAF (libvmaf default model) against the original.

Resumable: each finished point is stored as ``WORK/videos/<id>/points/<point>.json`` (atomic) and
never recomputed; the archive jobs resume from their own state. ``WORK/study.json`` records the
measurement settings (prices and TCO settings excluded: they only change the analysis) and a re-run
with other measurement settings is refused.

The settings are read by :mod:`.study_config`; the analysis of the measurements (BD-rates, TCO,
break-even) is :mod:`.study_analysis`, which :mod:`.report` uses.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from basicvsr_archival.utils.atomic import atomic_path
from basicvsr_archival.utils.ffmpeg import (
    PathLike,
    chroma_subsampling,
    iter_video_frames,
    probe_video,
    run_ffmpeg,
)

from .codec import encode_full
from .evaluate import bicubic_upscale, frame_metrics, vmaf_score
from .package import sha256_file, to_jsonable
from .pipeline import run_archive_job
from .restore import restore_archive
from .study_analysis import write_json_atomic
from .study_config import Study, StudyError, archival_config

STATE_NAME = "study.json"


# ------------------------------------------------------------------------------------------ small helpers
def _read_json(path: Path) -> dict[str, Any] | None:
    """Parsed JSON file, or None when it is missing or unreadable (e.g. a crash left nothing)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _now() -> str:
    """UTC time stamp."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def point_id(variant: str, scale: int, crf: int) -> str:
    """File stem of a ladder point, e.g. ``sr_finetuned_x2_crf28`` (``full_x1_crf28``)."""
    return f"{variant}_x{1 if variant == 'full' else scale}_crf{crf}"


def prepare_source(src: Path, out: Path, scales: Sequence[int], multiple: int | None) -> tuple[Path, dict]:
    """``src`` when its size suits every scale, else a centre crop written losslessly (FFV1) to ``out``.

    The kept size is the largest one that ``multiple`` divides (default: every ``scale x`` chroma
    subsampling, so each LR frame holds whole chroma samples, which x264 / x265 require).
    """
    info = probe_video(src)
    sx, sy = chroma_subsampling(info.pix_fmt.replace("yuvj", "yuv"))
    mx = math.lcm(*(s * sx for s in scales)) if multiple is None else int(multiple)
    my = math.lcm(*(s * sy for s in scales)) if multiple is None else int(multiple)
    w, h = info.width // mx * mx, info.height // my * my
    crop = {"from": [info.width, info.height], "to": [w, h]}
    if (w, h) == (info.width, info.height):
        return src, {**crop, "cropped": False}
    if w < 16 or h < 16:
        raise StudyError(f"{src}: {info.width}x{info.height} is too small for scales {list(scales)}")
    x, y = (info.width - w) // 4 * 2, (info.height - h) // 4 * 2  # even offsets keep chroma aligned
    if not out.is_file():
        pix = info.pix_fmt.replace("yuvj", "yuv")
        args = ["-y", "-i", str(src), "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", f"crop={w}:{h}:{x}:{y}",
                "-c:v", "ffv1", "-pix_fmt", pix, "-fps_mode", "passthrough"]  # fmt: skip
        if info.color_range in ("tv", "pc"):
            args += ["-color_range", info.color_range]
        with atomic_path(out) as tmp:
            run_ffmpeg([*args, str(tmp)], f"cropping {src} to {w}x{h}")
    return out, {**crop, "cropped": True, "offset": [x, y], "file": str(out)}


def _measure(dist: Path, ref: Path, ref_info: Any, log_dir: Path, vmaf: bool) -> dict[str, Any]:
    """PSNR / SSIM (frame means) and VMAF of ``dist`` against ``ref``."""
    m = frame_metrics(iter_video_frames(dist), iter_video_frames(ref), dist.stem, False, ref_info.num_frames)
    score = vmaf_score(dist, ref, log_dir, ref_info.pix_fmt) if vmaf else None
    return {"psnr": m["psnr"], "ssim": m["ssim"], "vmaf": score, "frames": m["frames"]}


# ------------------------------------------------------------------------------------------ the ladder
@dataclass
class _VideoJob:
    """One video of the study: its id, measured source (maybe cropped) and folder."""

    vid: str
    original: Path
    source: Path
    folder: Path
    crop: dict[str, Any]


def _video_ids(videos: Sequence[PathLike]) -> list[str]:
    """Unique ids from the file stems (``clip``, ``clip-2``, ...)."""
    ids: list[str] = []
    for v in videos:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(v).stem) or "video"
        vid, n = stem, 2
        while vid in ids:
            vid, n = f"{stem}-{n}", n + 1
        ids.append(vid)
    return ids


def _base_checkpoints(study: Study, work: Path, progress: bool) -> dict[int, Path | None]:
    """Base checkpoint per scale: the config's ``base_checkpoint``, or one pre-trained by the study."""
    needs = "sr_base" in study.settings.variants
    given, pre = study.cfg.get("base_checkpoint"), study.settings.base_pretrain
    if given or pre is None:
        if needs and not given:
            raise StudyError(f"{study.path}: 'sr_base' needs base_checkpoint or study.base_pretrain")
        return {s: Path(given) if given else None for s in study.settings.scales}
    out: dict[int, Path | None] = {}
    for s in study.settings.scales:
        folder = work / "base" / f"x{s}"
        base = folder / "base.pth"
        if not base.is_file():
            src, _ = prepare_source(Path(pre["video"]), folder / "src.mkv", [s], study.settings.crop_multiple)
            raw = copy.deepcopy(study.cfg)
            raw["finetune"] = {**raw.get("finetune", {}), "enabled": True, **dict(pre.get("finetune") or {})}
            raw["storage"] = {**raw.get("storage", {}), "mode": "full"}
            raw["base_checkpoint"] = None
            cfg = archival_config(raw, s, int(pre.get("crf") or study.archival.codec.crf))
            job = run_archive_job(cfg, src, folder / "pretrain.archive", folder / "pretrain.work", True,
                                  progress=progress)  # fmt: skip
            with atomic_path(base) as tmp:
                shutil.copyfile(job.work_dir / "finetune" / "finetuned.pth", tmp)
        out[s] = base
    return out


def measurement_fingerprint(study: Study) -> tuple[str, dict[str, Any]]:
    """SHA-256 of everything that shapes the measured numbers (not the ladder, prices or TCO settings)."""
    given = study.cfg.get("base_checkpoint")
    if given and not Path(given).is_file():
        raise StudyError(f"{given}: base checkpoint not found (config base_checkpoint)")
    a = study.archival.to_dict()
    a["codec"] = {k: v for k, v in a["codec"].items() if k not in ("crf", "bitrate", "scale")}
    a["model"]["generator"].pop("upscale_factor", None)
    a.pop("base_checkpoint", None)
    a.pop("config_name", None)
    s = study.settings
    d = {"archival": a, "vmaf": s.vmaf, "crop_multiple": s.crop_multiple, "base_pretrain": s.base_pretrain,
         "base_sha256": sha256_file(given) if given else None,
         "finetune_variant": "sr_finetuned" in s.variants}  # fmt: skip
    d = to_jsonable(d)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest(), d


def _check_state(work: Path, fingerprint: str, settings: dict, jobs: Sequence[_VideoJob]) -> None:
    """Create ``WORK/study.json`` or refuse a work dir made with other measurement settings / sources."""
    path = work / STATE_NAME
    state = _read_json(path) if path.exists() else {"fingerprint": fingerprint, "settings": settings}
    if state is None:
        raise StudyError(f"{path}: unreadable study state; use another -o")
    if state.get("fingerprint") != fingerprint:
        raise StudyError(f"{work}: holds a study made with other measurement settings; use another -o")
    videos = state.setdefault("videos", {})
    for j in jobs:
        st = j.original.stat()
        ident = {"path": str(j.original.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        if j.vid in videos and videos[j.vid] != ident:
            raise StudyError(f"{j.original}: differs from the video {j.vid!r} in {work}; use another -o")
        videos[j.vid] = ident
    write_json_atomic(state, path)


def _full_point(study: Study, job: _VideoJob, crf: int, tmp: Path) -> dict[str, Any]:
    """Encode the source at full resolution at ``crf`` and measure it."""
    out = job.folder / f"full_crf{crf}.mp4"
    res = encode_full(job.source, out, replace(study.archival.codec, crf=crf, bitrate=None))
    t0 = time.perf_counter()
    for _ in iter_video_frames(out):
        pass
    decode_s = time.perf_counter() - t0
    m = _measure(out, job.source, probe_video(job.source), tmp, study.settings.vmaf)
    secs = {"encode": res.seconds, "finetune": 0.0, "restore": decode_s}
    detail = {"lr": res.bytes, "model": 0, "manifest": 0}
    return {**m, "bytes_detail": detail, "device": "cpu", "seconds": secs, "file": str(out)}


def _sr_point(
    study: Study, job: _VideoJob, variant: str, scale: int, crf: int, base: Path | None, tmp: Path,
    progress: bool,
) -> dict[str, Any]:  # fmt: skip
    """Archive the source at (scale, crf) (a resumable job shared by the SR options); measure ``variant``."""
    finetune = "sr_finetuned" in study.settings.variants
    cfg = archival_config(study.cfg, scale, crf, base, finetune)
    stem = job.folder / f"x{scale}_crf{crf}"
    res = run_archive_job(cfg, job.source, stem.with_suffix(".archive"), stem.with_suffix(".work"), True,
                          progress=progress)  # fmt: skip
    man, archive = res.manifest, res.archive
    sizes = {name: int(m["bytes"]) for name, m in man["members"].items()}
    lr_bytes = next(sizes[n] for n, m in man["members"].items() if m["role"] == "lr_bitstream")
    model_bytes = next(sizes[n] for n, m in man["members"].items() if m["role"] == "model")
    info = probe_video(job.source)
    out = tmp / f"{variant}.mkv"
    kw = dict(overwrite=True, progress=False, lossless=True, base_checkpoint=base)
    device = "cpu"
    if variant == "bicubic":
        seconds = bicubic_upscale(archive / "lr.mp4", out, info.width, info.height, info.fps)
    else:
        rr = restore_archive(archive, out, which="base" if variant == "sr_base" else "archive", **kw)
        seconds, device = rr.seconds, rr.device
    m = _measure(out, job.source, info, tmp, study.settings.vmaf)
    if study.settings.keep_videos:
        shutil.move(out, job.folder / f"{point_id(variant, scale, crf)}.mkv")
    detail = {"lr": lr_bytes, "model": model_bytes if variant == "sr_finetuned" else 0,
              "manifest": 0 if variant == "bicubic" else int(man["bytes"]["manifest"])}  # fmt: skip
    ft = man.get("finetune", {})
    secs = {"encode": float(man["timings"]["encode_lr"]), "restore": seconds,
            "finetune": float(man["timings"]["finetune"]) if variant == "sr_finetuned" else 0.0}  # fmt: skip
    extra = {k: ft.get(k) for k in ("iters", "stopped_by", "psnr_before", "psnr_after")}
    return {**m, "bytes_detail": detail, "seconds": secs, "device": device, "archive": str(archive),
            "finetune": extra if variant == "sr_finetuned" else None,
            "finetune_device": "cuda" if torch.cuda.is_available() else "cpu"}  # fmt: skip


def run_study(
    study: Study, videos: Sequence[PathLike], work_dir: PathLike, progress: bool = True, compute: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:  # fmt: skip
    """Measure every ladder point of every video, skipping finished ones; returns settings + points per video.

    ``compute=False`` measures nothing and returns the points already finished (e.g. to re-price them).
    """
    t_start = time.perf_counter()
    work = Path(work_dir)
    srcs = [Path(v) for v in videos]
    for v in srcs:
        if not v.is_file():
            raise StudyError(f"{v}: video not found")
        if work.resolve() == v.resolve() or work.resolve() in v.resolve().parents:
            raise StudyError(f"{work}: the work dir cannot be or contain the input {v}")
    work.mkdir(parents=True, exist_ok=True)
    jobs = []
    for vid, src in zip(_video_ids(srcs), srcs):
        folder = work / "videos" / vid
        source, crop = prepare_source(src, folder / "source_cropped.mkv", study.settings.scales,
                                      study.settings.crop_multiple)  # fmt: skip
        if crop["cropped"]:
            log(f"{src}: cropped {crop['from'][0]}x{crop['from'][1]} -> {crop['to'][0]}x{crop['to'][1]}")
        jobs.append(_VideoJob(vid, src, source, folder, crop))
    fingerprint, fp_settings = measurement_fingerprint(study)
    if compute:
        _check_state(work, fingerprint, fp_settings, jobs)
    s = study.settings
    plan = [(j, "full", 1, c) for j in jobs for c in s.crfs]
    plan += [(j, v, sc, c) for j in jobs for sc in s.scales for v in s.variants[1:] for c in s.crfs]
    stored = [_read_json(p[0].folder / "points" / f"{point_id(*p[1:])}.json") or {} for p in plan]
    todo = [p for p, rec in zip(plan, stored) if rec.get("fingerprint") != fingerprint]
    what = "to compute" if compute else "missing (--report-only: not measured)"
    log(f"study: {len(plan)} points, {len(plan) - len(todo)} finished (skipped), {len(todo)} {what}")
    todo = todo if compute else []
    bases = _base_checkpoints(study, work, progress) if any(p[1] != "full" for p in todo) else {}
    for j, variant, scale, crf in tqdm(todo, desc="study points", unit="point", disable=not progress):
        pid = point_id(variant, scale, crf)
        tmp = j.folder / f".tmp-{pid}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            if variant == "full":
                rec = _full_point(study, j, crf, tmp)
            else:
                rec = _sr_point(study, j, variant, scale, crf, bases[scale], tmp, progress)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rec.update(video=j.vid, variant=variant, scale=scale, crf=crf, point=pid, fingerprint=fingerprint,
                   created_utc=_now())  # fmt: skip
        write_json_atomic(rec, j.folder / "points" / f"{pid}.json")
    a = study.archival
    settings = {"study": asdict(s), "tco": asdict(study.tco), "cost": study.cost.to_config(),
                "codec": a.codec.to_dict(), "finetune": a.finetune.to_dict(),
                "restore": a.restore.to_dict()}  # fmt: skip
    results = {"config": study.path, "created_utc": _now(), "fingerprint": fingerprint, "settings": settings,
               "videos": []}  # fmt: skip
    for j in jobs:
        points = [_read_json(j.folder / "points" / f"{point_id(*p[1:])}.json") for p in plan if p[0] is j]
        points = [p for p in points if p is not None and p.get("fingerprint") == fingerprint]
        entry = {"id": j.vid, "original": str(j.original), "source": str(j.source), "crop": j.crop,
                 "frames": probe_video(j.source).num_frames, "points": points}  # fmt: skip
        results["videos"].append(entry)
    results.update(wall_seconds=time.perf_counter() - t_start, torch_threads=torch.get_num_threads())
    return to_jsonable(results)
