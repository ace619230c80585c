"""SR-aware vs uniform CRF on post-SR quality: BD-rate and the PSNR gain at equal bytes (issue 15 item 1).

For every video (``tools/archival_study.py CONFIG VIDEOS -o WORK --sr-aware``):

1. the model: the video's fine-tuned model at the reference CRF (the study's archive job at
   (scale, CRF) with SR-aware encoding off, so it is trained on the uniform stream, as the issue orders);
2. the uniform curve: :func:`.codec.encode_lr` (the ordinary stream an archive stores) at every CRF of
   the ``codec.sr_aware`` ladder; file bytes, video payload bytes and the mean post-SR PSNR with that
   model (restored in the restore's chunks; in ``zones`` mode these are the ladder's own whole-stream
   encodes, restored once);
3. the SR-aware curve: the ladder is encoded and measured once (:func:`.sr_aware.build_ladder`), then
   for every uniform point (or those at ``study.sr_aware_budgets``: a ladder wider than the budgets
   lets the segments at the ends of the curve move too) its payload is the byte budget of one allocation
   (:func:`.sr_aware.write_allocation`); each final stream is restored and measured the same way (its
   own post-SR PSNR, neighbouring segments included, not the table's prediction).

4. the constant-bitrate curve: at every budget, x264 at the budget's bitrate with a VBV buffer of one
   segment (:func:`cbr_codec`: every GOP gets about the same bits, the allocation SR-aware replaces),
   restored and measured the same way.

Analysis (:func:`analyse_sr_aware`): the BD-rate (VCEG-M33, :func:`.study_analysis.bd_rate`) of the
SR-aware curve against the uniform one, on file bytes (what the store bills) and on payload bytes,
against the constant-bitrate curve (``cbr``, file bytes),
and (``same_gops``) against uniform CRF with the same closed GOPs (the ladder's uniform rungs, each a
whole restored stream: what the allocation alone gains, as NCS compares);
the gain at equal bytes: every SR-aware point's PSNR minus the uniform curve's at its bytes,
interpolated (PCHIP in log bytes) and only inside the uniform curve's byte range.

Resumable: each video's measurements are one JSON file (``WORK/videos/ID/sr_aware/points.json``)
tagged with a fingerprint of the settings; finished videos are skipped on a re-run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.interpolate import PchipInterpolator
from tqdm import tqdm

from basicvsr_archival.models.backends import apply_backend
from basicvsr_archival.utils.ffmpeg import PathLike, probe_video

from .codec import CodecSettings, encode_lr
from .job_config import stored_model_config
from .model_storage import read_state_dict
from .package import to_jsonable
from .pipeline import run_archive_job
from .restore import build_model
from .sr_aware import build_ladder, post_sr_psnr, stream_payload, write_allocation
from .sr_aware_settings import SrAwareSettings
from .study import _base_checkpoints, _read_json, _video_ids, prepare_source
from .study_analysis import bd_rate, write_json_atomic
from .study_config import Study, StudyError, archival_config

GOAL_BD_RATE = -10.0  # issue 15: SR-aware at least 10 % fewer bytes at equal post-SR PSNR (paper: -15 %)
POINTS_NAME = "points.json"


def sr_aware_settings(study: Study) -> SrAwareSettings:
    """The config's ``codec.sr_aware`` (gop, ladder); :class:`StudyError` when it is not enabled."""
    settings = study.archival.sr_aware
    if not settings.enabled:
        raise StudyError(
            f"{study.path}: --sr-aware needs codec.sr_aware=dict(enabled=True, gop=..., crfs=...)"
        )
    return settings


def reference_crf(settings: SrAwareSettings, crf: int | None = None) -> int:
    """The CRF the model is trained at: ``crf``, else the middle CRF of the ladder."""
    return int(crf) if crf is not None else settings.crfs[len(settings.crfs) // 2]


def budget_crfs(study: Study) -> list[int]:
    """CRFs whose uniform payload is an SR-aware budget (``study.sr_aware_budgets``); [] for every one."""
    ladder = list(sr_aware_settings(study).crfs)
    budgets = study.settings.sr_aware_budgets
    if budgets is None:
        return []  # every CRF of the ladder
    if not budgets or any(c not in ladder for c in budgets):
        raise StudyError(
            f"{study.path}: study.sr_aware_budgets {list(budgets)} must be CRFs of the ladder {ladder}"
        )
    return list(budgets)


def _fingerprint(study: Study, scale: int, crf: int) -> str:
    """SHA-256 of what shapes one video's measurements."""
    d = {"archival": study.archival.to_dict(), "scale": scale, "crf": crf, "budgets": budget_crfs(study),
         "base_pretrain": study.settings.base_pretrain, "base": study.cfg.get("base_checkpoint")}  # fmt: skip
    return hashlib.sha256(json.dumps(to_jsonable(d), sort_keys=True).encode()).hexdigest()


def _model(study: Study, source: Path, folder: Path, scale: int, crf: int, base: Path | None, progress: bool):
    """The video's model fine-tuned on its uniform stream at ``crf`` (an archive job, resumable)."""
    raw = copy.deepcopy(study.cfg)
    raw["codec"] = {**raw.get("codec", {}), "sr_aware": {"enabled": False}}
    cfg = archival_config(raw, scale, crf, base, finetune=True)
    job = run_archive_job(
        cfg, source, folder / "model.archive", folder / "model.work", True, progress=progress
    )
    state = read_state_dict(job.work_dir / "finetune" / "finetuned.pth")
    model = build_model(stored_model_config(cfg.model), state, str(source))
    apply_backend(model, "auto")  # the path restores take
    return model, cfg


def cbr_codec(codec: CodecSettings, payload: int, frames: int, fps: float, gop: int) -> CodecSettings:
    """``codec`` at a constant bitrate ``R = 8 * payload * fps / frames`` bit/s (``-maxrate R``).

    The VBV buffer (``-bufsize R * gop / fps``) holds one segment of ``gop`` frames, so each segment
    gets about ``R * gop / fps`` bits.
    """
    rate = max(1, round(8 * payload * fps / frames))
    vbv = ("-maxrate", str(rate), "-bufsize", str(max(1, round(rate * gop / fps))))
    return replace(codec, crf=None, bitrate=str(rate), extra_args=(*codec.extra_args, *vbv))


def _mean_post_sr(model: Any, path: Path, source: Path, chunks: tuple[int | None, int | None]) -> float:
    """Mean per-frame post-SR PSNR of the stream ``path`` against ``source`` (the restore's chunks)."""
    return float(np.mean(post_sr_psnr(model, [path], source, *chunks)))


def _cbr_points(
    source: Path, folder: Path, codec: CodecSettings, gop: int, budgets: Sequence[Mapping[str, Any]],
    model: Any, chunks: tuple[int | None, int | None],
) -> list[dict[str, Any]]:  # fmt: skip
    """Step 4: a constant-bitrate stream at every budget, restored and measured."""
    info, out = probe_video(source), []
    for b in budgets:
        rated = cbr_codec(codec, b["budget"], info.num_frames, float(info.fps), gop)
        enc = encode_lr(source, folder / f"cbr_budget_crf{b['budget_crf']}.mp4", rated)
        q = _mean_post_sr(model, enc.dst, source, chunks)
        out.append({"budget_crf": b["budget_crf"], "bytes": enc.dst.stat().st_size,
                    "payload": stream_payload(enc.dst).bytes, "psnr": q})  # fmt: skip
    return out


def measure_video(
    study: Study, source: Path, folder: Path, scale: int, crf: int, base: Path | None, progress: bool = False
) -> dict[str, Any]:
    """Steps 1-4 of the module docstring for one (prepared) source: uniform, SR-aware and CBR points."""
    settings = sr_aware_settings(study)
    model, cfg = _model(study, source, folder, scale, crf, base, progress)
    chunks = (cfg.restore.max_seq_len, cfg.restore.overlap)
    codec = cfg.codec
    lad_dir = folder / "ladder"
    shutil.rmtree(lad_dir, ignore_errors=True)
    ladder = build_ladder(source, codec, settings, model, lad_dir, *chunks)
    table, n = ladder.table, len(ladder.table.frames)
    uniform = []
    for j, c in enumerate(table.crfs):
        if settings.mode == "zones":  # the zones ladder's whole streams are these encodes, already restored
            dst, q = ladder.files[c][0], table.mean_psnr([j] * n)
        else:
            dst = encode_lr(source, folder / f"uniform_crf{c}.mp4", replace(codec, crf=c, bitrate=None)).dst
            q = _mean_post_sr(model, dst, source, chunks)
        nbytes, payload = dst.stat().st_size, stream_payload(dst).bytes
        uniform.append({"crf": c, "bytes": nbytes, "payload": payload, "psnr": q})
    points, budgets = [], budget_crfs(study)
    for u in (u for u in uniform if not budgets or u["crf"] in budgets):
        dst = folder / f"sr_aware_budget_crf{u['crf']}.mp4"
        res = write_allocation(source, dst, codec, settings, ladder, u["payload"], lad_dir / "concat.txt")
        q = _mean_post_sr(model, res.dst, source, chunks)
        points.append({"budget_crf": u["crf"], "budget": u["payload"], "bytes": res.bytes,
                       "payload": res.stream_bytes, "psnr": q, "predicted_psnr": res.predicted_psnr,
                       "crfs": res.crfs, "goal_met": res.goal_met})  # fmt: skip
    shutil.rmtree(lad_dir, ignore_errors=True)
    cbr = _cbr_points(source, folder, codec, settings.gop, points, model, chunks)
    return {"model_crf": crf, "scale": scale, "gop": settings.gop, "frames": sum(table.frames),
            "segments": n, "uniform": uniform, "sr_aware": points,
            "ladder": table.to_dict(), "seconds": ladder.seconds, "mode": settings.mode,
            "uniform_same_gops": table.uniform_points(), "cbr": cbr}  # fmt: skip


def run_sr_aware_study(
    study: Study, videos: Sequence[PathLike], work_dir: PathLike, crf: int | None = None,
    progress: bool = True, log: Callable[[str], None] = print,
) -> dict[str, Any]:  # fmt: skip
    """Measure every video (skipping finished ones); returns the settings and per-video points."""
    settings = sr_aware_settings(study)
    work, srcs = Path(work_dir), [Path(v) for v in videos]
    for v in srcs:
        if not v.is_file():
            raise StudyError(f"{v}: video not found")
    scale, ref = study.tco.scale or study.settings.scales[0], reference_crf(settings, crf)
    if not settings.crfs[0] <= ref <= settings.crfs[-1]:
        raise StudyError(f"--shared-crf {ref} is outside the SR-aware ladder {list(settings.crfs)}")
    fingerprint = _fingerprint(study, scale, ref)  # checks the budgets too
    out: dict[str, Any] = {"config": study.path, "scale": scale, "model_crf": ref,
                           "sr_aware": settings.to_dict(), "budget_crfs": budget_crfs(study),
                           "videos": {}}  # fmt: skip
    todo = []
    for vid, src in zip(_video_ids(srcs), srcs):
        folder = work / "videos" / vid / "sr_aware"
        rec = _read_json(folder / POINTS_NAME)
        if rec is not None and rec.get("fingerprint") == fingerprint and "cbr" in rec:
            out["videos"][vid] = rec
        else:  # a record from before the constant-bitrate baseline only gets that added
            todo.append((vid, src, folder, rec if rec and rec.get("fingerprint") == fingerprint else None))
    log(f"SR-aware study: {len(srcs)} videos, {len(srcs) - len(todo)} finished (skipped)")
    pre = study.settings.base_pretrain is not None or study.cfg.get("base_checkpoint")
    bases = _base_checkpoints(study, work, progress) if todo and pre else {}  # none: from scratch
    for vid, src, folder, old in tqdm(todo, desc="SR-aware videos", unit="video", disable=not progress):
        folder.mkdir(parents=True, exist_ok=True)
        source, _ = prepare_source(
            src, folder.parent / "source_cropped.mkv", [scale], study.settings.crop_multiple
        )
        if old is not None:
            model, cfg = _model(study, source, folder, scale, ref, bases.get(scale), False)
            chunks = (cfg.restore.max_seq_len, cfg.restore.overlap)
            cbr = _cbr_points(source, folder, cfg.codec, settings.gop, old["sr_aware"], model, chunks)
            rec = old | {"cbr": cbr}
        else:
            rec = measure_video(study, source, folder, scale, ref, bases.get(scale), progress=False)
            rec |= {"fingerprint": fingerprint, "source": str(src)}
        write_json_atomic(to_jsonable(rec), folder / POINTS_NAME)
        out["videos"][vid] = rec
    return out


# ------------------------------------------------------------------------------------------ analysis
def uniform_psnr_at(uniform: Sequence[Mapping[str, Any]], nbytes: float, key: str = "bytes") -> float | None:
    """PSNR of the uniform curve at ``nbytes`` (PCHIP in log bytes); None outside its byte range."""
    pts = sorted((float(u[key]), float(u["psnr"])) for u in uniform)
    xs = np.log([p[0] for p in pts])
    if len(pts) < 2 or np.any(np.diff(xs) <= 0) or not xs[0] <= math.log(nbytes) <= xs[-1]:
        return None
    return float(PchipInterpolator(xs, [p[1] for p in pts])(math.log(nbytes)))


def analyse_video(rec: Mapping[str, Any], method: str = "pchip") -> dict[str, Any]:
    """BD-rates (file and payload bytes) and the PSNR gain at equal bytes of one video."""
    u, s = rec["uniform"], rec["sr_aware"]
    out: dict[str, Any] = {}
    for key in ("bytes", "payload"):
        bd = bd_rate([p[key] for p in u], [p["psnr"] for p in u], [p[key] for p in s], [p["psnr"] for p in s],
                     method)  # fmt: skip
        gains = [None if (q := uniform_psnr_at(u, p[key], key)) is None else p["psnr"] - q for p in s]
        found = [g for g in gains if g is not None]
        out[key] = {"bd_rate": bd.percent, "bd_flag": bd.flag, "overlap_fraction": bd.overlap_fraction,
                    "gain_db": gains, "mean_gain_db": statistics.fmean(found) if found else None}  # fmt: skip
    same = rec.get("uniform_same_gops") or []  # segments mode: the uniform streams of the same closed GOPs
    bd = bd_rate([p["bytes"] for p in same], [p["psnr"] for p in same], [p["payload"] for p in s],
                 [p["psnr"] for p in s], method)  # fmt: skip
    out["same_gops"] = {"bd_rate": bd.percent, "bd_flag": bd.flag, "overlap_fraction": bd.overlap_fraction}
    cbr = rec.get("cbr") or []
    bd = bd_rate([p["bytes"] for p in cbr], [p["psnr"] for p in cbr], [p["bytes"] for p in s],
                 [p["psnr"] for p in s], method)  # fmt: skip
    out["cbr"] = {"bd_rate": bd.percent, "bd_flag": bd.flag, "overlap_fraction": bd.overlap_fraction}
    out["distinct_crfs"] = max(len(set(p["crfs"])) for p in s)
    out["prediction_error_db"] = statistics.fmean(p["psnr"] - p["predicted_psnr"] for p in s)
    return out


def analyse_sr_aware(measured: Mapping[str, Any], method: str = "pchip") -> dict[str, Any]:
    """Per video and over the videos: BD-rate of SR-aware vs uniform CRF on post-SR PSNR, equal-bytes gain."""
    rows = {vid: analyse_video(rec, method) for vid, rec in measured["videos"].items()}
    summary: dict[str, Any] = {"goal_bd_rate": GOAL_BD_RATE, "videos": len(rows)}
    for key in ("bytes", "payload"):
        bds = [r[key]["bd_rate"] for r in rows.values() if math.isfinite(r[key]["bd_rate"])]
        gains = [r[key]["mean_gain_db"] for r in rows.values() if r[key]["mean_gain_db"] is not None]
        summary[key] = {
            "mean_bd_rate": statistics.fmean(bds) if bds else None,
            "median_bd_rate": statistics.median(bds) if bds else None,
            "videos_with_bd_rate": len(bds),
            "mean_gain_db": statistics.fmean(gains) if gains else None,
        }
    same = [r["same_gops"]["bd_rate"] for r in rows.values() if math.isfinite(r["same_gops"]["bd_rate"])]
    summary["same_gops"] = {"mean_bd_rate": statistics.fmean(same) if same else None, "videos": len(same)}
    cbr = [r["cbr"]["bd_rate"] for r in rows.values() if math.isfinite(r["cbr"]["bd_rate"])]
    summary["cbr"] = {"mean_bd_rate": statistics.fmean(cbr) if cbr else None, "videos": len(cbr)}
    mean = summary["bytes"]["mean_bd_rate"]
    summary["goal_met"] = mean is not None and mean <= GOAL_BD_RATE
    return {"videos": rows, "summary": summary, "method": method}
