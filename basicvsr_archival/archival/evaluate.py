"""Evaluate an archive against the original: PSNR, SSIM and VMAF of the restoration and of baselines.

Variants, each a video compared frame by frame with the reference (the original video):

* ``sr_archive``: the archive restored with its fine-tuned model (bytes: the whole archive);
* ``bicubic``: the archive's LR stream upscaled with bicubic interpolation (bytes: the LR stream);
* ``sr_base``: restored with the base checkpoint alone, no fine-tuning (when the archive has a base);
* ``full_res``: the original encoded at full resolution with the archive's codec and preset at the
  CRF whose size is closest to the archive's total bytes (a bisection over the CRF range).

PSNR / SSIM: the project's frame-level MMEditing metrics (8-bit RGB, no border crop), averaged over
frames. VMAF: ffmpeg's ``libvmaf`` filter with its built-in default model, both videos converted to
the reference's YUV format. ``seconds``: time to produce the viewable video at retrieval (restore,
upscale, or decode). Output: a JSON report and a markdown table.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from basicvsr_archival.evaluation.metrics import psnr, ssim
from basicvsr_archival.utils.ffmpeg import (
    PathLike,
    VideoWriter,
    atomic_output,
    iter_video_frames,
    probe_video,
    run_ffmpeg,
)

from .codec import CRF_RANGE, CodecSettings, encode_full
from .container import open_archive
from .package import ArchiveError, member_of, sha256_file, to_jsonable
from .restore import decoded_frames, restore_archive

VMAF_FORMATS = ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le")


class EvaluationError(ArchiveError):
    """The archive and the reference cannot be compared (frame counts or sizes differ, VMAF failed)."""


def frame_metrics(
    dist: Iterator[np.ndarray], ref: Iterator[np.ndarray], desc: str = "metrics", progress: bool = True,
    total: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Mean PSNR / SSIM over paired RGB uint8 frames, with the per-frame PSNR; counts must match."""
    psnrs, ssims = [], []
    bar = tqdm(total=total, desc=desc, unit="frame", disable=not progress, leave=False)
    sentinel = object()
    try:
        while True:
            d, r = next(dist, sentinel), next(ref, sentinel)
            if d is sentinel and r is sentinel:
                break
            if d is sentinel or r is sentinel:
                raise EvaluationError(
                    f"{desc}: frame counts differ (after {len(psnrs)} frames one side ended)"
                )
            if d.shape != r.shape:
                raise EvaluationError(f"{desc}: frame {len(psnrs)} is {d.shape}, reference {r.shape}")
            psnrs.append(psnr(d, r))
            ssims.append(ssim(d, r))
            bar.update(1)
    finally:
        bar.close()
    finite = [p for p in psnrs if math.isfinite(p)]
    mean_psnr = (
        float(np.mean(finite)) if len(finite) == len(psnrs) and psnrs else (math.inf if psnrs else None)
    )
    return {
        "frames": len(psnrs),
        "psnr": mean_psnr,
        "ssim": float(np.mean(ssims)) if ssims else None,
        "psnr_per_frame": [round(p, 4) if math.isfinite(p) else None for p in psnrs],
    }


def restoration_psnr(
    model: torch.nn.Module,
    lq_video: PathLike,
    gt_video: PathLike,
    start: int,
    count: int,
    max_seq_len: int | None,
    device: str | None = None,
    overlap: int | None = None,
) -> float | None:
    """Mean PSNR (dB, RGB, 8-bit) of the model's restoration of frames ``[start, start + count)``.

    ``max_seq_len`` / ``overlap``: chunks as in :func:`~basicvsr_archival.apis.restore_video_frames`.
    The model (changed in place) runs on the backend an archive records for its restores
    (:func:`~basicvsr_archival.archival.restore.restore_backend`: 'auto', the default settings).
    """
    if count <= 0:
        return None
    from basicvsr_archival.apis.inference import resolve_device, restore_video_frames
    from basicvsr_archival.models.backends import apply_backend

    if device is not None:
        model.to(resolve_device(device))
    apply_backend(model, "auto")  # the path restores take (archival/restore.py)

    lq = list(itertools.islice(iter_video_frames(lq_video, start=start), count))
    gt = itertools.islice(iter_video_frames(gt_video, start=start), count)
    out = restore_video_frames(
        model, lq, max_seq_len=max_seq_len, device=device, progress=False, overlap=overlap
    )
    values = [psnr(o, g) for o, g in zip(out, gt)]
    return float(np.mean(values)) if values else None


def _filter_escape(value: str) -> str:
    """Escape a filter option value for an ffmpeg filtergraph (option level, then graph level)."""
    for ch in ("\\", "'", ":"):
        value = value.replace(ch, "\\" + ch)
    for ch in ("\\", "'", "[", "]", ",", ";"):
        value = value.replace(ch, "\\" + ch)
    return value


def vmaf_score(
    dist: PathLike, ref: PathLike, log_dir: PathLike, pix_fmt: str = "yuv420p", threads: int = 2
) -> float:
    """Mean VMAF (libvmaf's built-in default model) of ``dist`` against ``ref`` (same size and count)."""
    fmt = pix_fmt if pix_fmt in VMAF_FORMATS else "yuv444p"
    log = Path(log_dir) / f"vmaf_{Path(dist).stem}.json"
    graph = (
        f"[0:v]setpts=PTS-STARTPTS,format={fmt}[dist];[1:v]setpts=PTS-STARTPTS,format={fmt}[ref];"
        f"[dist][ref]libvmaf=log_fmt=json:log_path={_filter_escape(str(log))}:n_threads={threads}"
    )
    run_ffmpeg(["-i", str(dist), "-i", str(ref), "-lavfi", graph, "-f", "null", "-"], f"VMAF of {dist}")
    try:
        data = json.loads(log.read_text())
        return float(data["pooled_metrics"]["vmaf"]["mean"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvaluationError(f"{log}: unreadable libvmaf log ({exc})") from None


def bicubic_upscale(lr: PathLike, out: PathLike, width: int, height: int, fps: Any) -> float:
    """Upscale every LR frame to ``width x height`` with bicubic interpolation into a lossless video."""
    t0 = time.perf_counter()
    with VideoWriter(out, fps=fps, lossless=True, codec="ffv1") as writer:
        for frame in iter_video_frames(lr):
            writer.write(cv2.resize(frame, (width, height), interpolation=cv2.INTER_CUBIC))
    return time.perf_counter() - t0


def closest_crf_encode(
    reference: PathLike, settings: CodecSettings, target_bytes: int, work: Path, max_trials: int = 6
) -> tuple[Path, int, dict[int, int]]:
    """Encode ``reference`` at full resolution at the CRF whose size is closest to ``target_bytes``.

    Bisection over the codec's CRF range (size falls as CRF rises), at most ``max_trials`` encodes;
    returns (file of the best CRF, that CRF, bytes of every CRF tried).
    """
    lo, hi = CRF_RANGE[settings.codec]
    tried: dict[int, int] = {}
    files: dict[int, Path] = {}
    while lo <= hi and len(tried) < max_trials:
        mid = (lo + hi) // 2
        path = work / f"full_res_crf{mid}.mkv"
        res = encode_full(reference, path, replace(settings, crf=mid, bitrate=None))
        tried[mid], files[mid] = res.bytes, path
        if res.bytes > target_bytes:
            lo = mid + 1
        else:
            hi = mid - 1
    best = min(tried, key=lambda c: (abs(tried[c] - target_bytes), c))
    for crf, path in files.items():
        if crf != best:
            path.unlink(missing_ok=True)
    return files[best], best, tried


def _decode_seconds(path: Path) -> float:
    """Seconds to decode every frame of ``path`` (the retrieval cost of a plain encode)."""
    t0 = time.perf_counter()
    for _ in iter_video_frames(path):
        pass
    return time.perf_counter() - t0


def evaluate_archive(
    archive: PathLike,
    reference: PathLike,
    output: PathLike | None = None,
    work_dir: PathLike | None = None,
    device: str | None = None,
    precision: str | None = None,
    base_checkpoint: PathLike | None = None,
    vmaf: bool = True,
    crf_trials: int = 6,
    progress: bool = True,
) -> dict[str, Any]:
    """Compare the archive's restoration and the baselines with ``reference``; see the module docstring.

    Intermediate videos go to ``work_dir`` (kept) or a temporary folder. With ``output`` the JSON
    report is written there (atomically) and the markdown table beside it (``.md``).
    """
    ref = Path(reference)
    ref_info = probe_video(ref)
    with tempfile.TemporaryDirectory(prefix="evaluate-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = _evaluate(
            Path(archive), ref, ref_info, work, device, precision, base_checkpoint, vmaf, crf_trials, progress
        )
    if output is not None:
        out = Path(output)
        with atomic_output(out, forbid=[ref, Path(archive)]) as tmp_json:
            tmp_json.write_text(json.dumps(to_jsonable(report), indent=1) + "\n")
        with atomic_output(out.with_suffix(".md"), forbid=[ref, Path(archive)]) as tmp_md:
            tmp_md.write_text(report["markdown"] + "\n")
    return report


def _evaluate(
    archive: Path, ref: Path, ref_info: Any, work: Path, device: str | None, precision: str | None,
    base_checkpoint: PathLike | None, vmaf: bool, crf_trials: int, progress: bool,
) -> dict[str, Any]:  # fmt: skip
    """Body of :func:`evaluate_archive` (``work`` exists)."""
    with open_archive(archive) as (manifest, folder):
        lr_member = member_of(manifest, "lr_bitstream", str(archive))
        lr_bytes = int(manifest["members"][lr_member]["bytes"])
        total = int(manifest["bytes"]["total"])
        lr_copy = work / f"lr{Path(lr_member).suffix}"
        shutil.copyfile(folder / lr_member, lr_copy)
    source = manifest["source"]
    if (ref_info.width, ref_info.height) != (source["width"], source["height"]):
        raise EvaluationError(
            f"{ref}: reference is {ref_info.width}x{ref_info.height}, "
            f"the archived source {source['width']}x{source['height']}"
        )
    variants: list[dict[str, Any]] = []

    def add(name: str, label: str, path: Path, nbytes: int, seconds: float, **extra: Any) -> None:
        m = frame_metrics(decoded_frames(path), iter_video_frames(ref), name, progress, ref_info.num_frames)
        v = vmaf_score(path, ref, work, _vmaf_format(ref_info.pix_fmt)) if vmaf else None
        variants.append({"name": name, "label": label, "bytes": nbytes, "seconds": round(seconds, 3),
                         "psnr": m["psnr"], "ssim": m["ssim"], "vmaf": v, "frames": m["frames"],
                         "psnr_per_frame": m["psnr_per_frame"], **extra})  # fmt: skip

    kw = dict(
        device=device, precision=precision, base_checkpoint=base_checkpoint, progress=progress, lossless=True
    )
    res = restore_archive(archive, work / "sr_archive.mkv", which="archive", overwrite=True, **kw)
    add("sr_archive", "SR archive (fine-tuned)", res.output, total, res.seconds)
    seconds = bicubic_upscale(lr_copy, work / "bicubic.mkv", ref_info.width, ref_info.height, ref_info.fps)
    add("bicubic", "bicubic upscale of the LR stream", work / "bicubic.mkv", lr_bytes, seconds)
    if manifest["model"].get("base_checkpoint"):
        res = restore_archive(archive, work / "sr_base.mkv", which="base", overwrite=True, **kw)
        add("sr_base", "SR base model (no fine-tuning)", res.output, lr_bytes, res.seconds)
    codec = CodecSettings.from_dict(manifest["settings"]["codec"])
    path, crf, tried = closest_crf_encode(ref, codec, total, work, crf_trials)
    label = f"full-res {codec.codec} CRF {crf} (size closest to the archive)"
    add("full_res", label, path, path.stat().st_size, _decode_seconds(path), crf=crf, crf_trials=tried)
    ref_sha = sha256_file(ref)
    report = {
        "archive": str(archive),
        "reference": str(ref),
        "reference_matches_source": ref_sha == source.get("sha256"),
        "reference_bytes": ref_info.bytes,
        "frames": ref_info.num_frames,
        "size": [ref_info.width, ref_info.height],
        "archive_bytes": {"total": total, "members": {n: m["bytes"] for n, m in manifest["members"].items()}},
        "variants": variants,
    }
    report["gains_db"] = _gains(variants)
    report["markdown"] = markdown_table(report)
    return report


def _vmaf_format(pix_fmt: str) -> str:
    """The YUV format VMAF compares in: the reference's when libvmaf supports it, else yuv444p."""
    fmt = pix_fmt.replace("yuvj", "yuv")
    return fmt if fmt in VMAF_FORMATS else "yuv444p"


def _gains(variants: list[dict[str, Any]]) -> dict[str, float | None]:
    """PSNR of the archive minus each baseline's (dB)."""
    by = {v["name"]: v for v in variants}
    sr = by["sr_archive"]["psnr"]
    out = {}
    for name in ("bicubic", "sr_base", "full_res"):
        if name in by and sr is not None and by[name]["psnr"] is not None:
            out[f"over_{name}"] = round(sr - by[name]["psnr"], 4)
    return out


def markdown_table(report: dict[str, Any]) -> str:
    """The variants as a markdown table (bytes, PSNR, SSIM, VMAF, seconds)."""

    def fmt(x: Any, spec: str) -> str:
        return "n/a" if x is None else ("inf" if isinstance(x, float) and math.isinf(x) else format(x, spec))

    lines = [
        f"Reference: {report['reference']} ({report['frames']} frames, "
        f"{report['size'][0]}x{report['size'][1]}, {report['reference_bytes']} bytes)",
        "",
        "| variant | bytes | PSNR (dB) | SSIM | VMAF | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in report["variants"]:
        lines.append(
            f"| {v['label']} | {v['bytes']} | {fmt(v['psnr'], '.3f')} | {fmt(v['ssim'], '.4f')} | "
            f"{fmt(v['vmaf'], '.2f')} | {fmt(v['seconds'], '.2f')} |"
        )
    return "\n".join(lines)
