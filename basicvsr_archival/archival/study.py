"""Does SR archival pay off? A rate-distortion ladder per video, BD-rates and TCO curves.

For every video and every ladder point (CRF x scale from the study config) four options are measured
against the original (the source, centre-cropped to a size every scale divides when needed):

* ``full``: the original encoded at full resolution (:func:`codec.encode_full`) at the CRF;
* ``bicubic``: the LR encode upscaled with bicubic interpolation (no model);
* ``sr_base``: the LR encode restored with the base model, no fine-tuning;
* ``sr_finetuned``: the archive of :func:`pipeline.run_archive_job` (LR encode + content-aware model
  fine-tuned on that LR stream + manifest) restored with :func:`restore.restore_archive`.

Bytes charged to one video (see :func:`charged_bytes`): ``full`` the encode; ``bicubic`` the LR stream;
``sr_base`` LR + manifest (the base checkpoint is stored once for the whole archive: 0 per video);
``sr_finetuned`` LR + model / ``model_shared_by`` + manifest. The model is counted **per point**: each
(scale, CRF) point has its own model, fine-tuned on that point's decoded LR stream, because that is
what its archive stores; ``model_shared_by`` (default the cluster size) divides it when one model
serves a cluster of similar videos, as in Neural Cloud Storage (HotStorage '23). Seconds per point:
``encode`` (LR or full encode), ``finetune`` (the archive job's fine-tuning stage, wall clock),
``restore`` (what a retrieval runs: decode for ``full``, upscale or SR + writing the video otherwise).
Quality: PSNR / SSIM (RGB, 8-bit, frame mean) and VMAF (libvmaf default model) against the original.

Resumable: each finished point is stored as ``WORK/videos/<id>/points/<point>.json`` (atomic) and
never recomputed; the archive jobs resume from their own state. ``WORK/study.json`` records the
measurement settings (prices and TCO settings excluded: they only change the analysis) and a re-run
with other measurement settings is refused.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.config import Config
from scipy.interpolate import PchipInterpolator
from tqdm import tqdm

from basicvsr_archival.utils.atomic import atomic_write_json
from basicvsr_archival.utils.ffmpeg import (
    PathLike,
    chroma_subsampling,
    iter_video_frames,
    probe_video,
    run_ffmpeg,
)

from .codec import encode_full
from .cost import ArchiveScenario, CostModel
from .evaluate import bicubic_upscale, frame_metrics, vmaf_score
from .package import ArchiveError, sha256_file, to_jsonable
from .pipeline import ArchivalConfig, load_archival_config, run_archive_job
from .restore import restore_archive

VARIANTS = ("full", "bicubic", "sr_base", "sr_finetuned")
SR_VARIANTS = VARIANTS[1:]
LABELS = {"full": "full-res encode", "bicubic": "LR + bicubic", "sr_base": "LR + base SR",
          "sr_finetuned": "LR + fine-tuned SR"}  # fmt: skip
BD_METHODS = ("pchip", "cubic")
MATCH_MODES = ("crf", "psnr", "vmaf")
STATE_NAME = "study.json"


class StudyError(ArchiveError):
    """Invalid study settings, or a work dir made with other measurement settings."""


# ------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class StudySettings:
    """The ladder (``study`` config section): scales x CRFs, options, VMAF, cropping, base pre-training."""

    scales: tuple[int, ...] = (2,)
    crfs: tuple[int, ...] = (23, 28, 33)
    variants: tuple[str, ...] = VARIANTS
    vmaf: bool = True
    crop_multiple: int | None = None
    keep_videos: bool = False
    bd_method: str = "pchip"
    base_pretrain: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        """Validate and normalise the fields (a ``base_pretrain`` without a video means none)."""
        unknown = sorted(set(self.variants) - set(VARIANTS))
        pre = self.base_pretrain if (self.base_pretrain or {}).get("video") is not None else None
        object.__setattr__(self, "scales", tuple(int(x) for x in self.scales))
        object.__setattr__(self, "crfs", tuple(sorted({int(c) for c in self.crfs})))
        object.__setattr__(self, "variants", tuple(v for v in VARIANTS if v in set(self.variants)))
        object.__setattr__(self, "base_pretrain", pre)
        checks = [
            (self.scales and all(x in (2, 4) for x in self.scales),
             f"scales must be a non-empty list of 2 and/or 4, got {self.scales}"),
            (self.crfs, "crfs must list at least one CRF"),
            (not unknown and "full" in self.variants and len(self.variants) > 1,
             f"variants must hold 'full' and at least one of {SR_VARIANTS} (unknown: {unknown})"),
            (self.bd_method in BD_METHODS, f"bd_method must be one of {BD_METHODS}, got {self.bd_method!r}"),
            (self.crop_multiple is None or int(self.crop_multiple) >= 1,
             f"crop_multiple must be >= 1 or None, got {self.crop_multiple}"),
            (pre is None or Path(str(pre["video"])).is_file(),
             f"base_pretrain.video: {(pre or {}).get('video')!r} is not a file"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise StudyError(f"study.{msg}")


@dataclass(frozen=True)
class TcoSettings:
    """The cost comparison (``tco`` config section); the prices are the ``cost`` section."""

    horizon_days: float = 365.0
    cluster_size: int = 1
    model_shared_by: int | None = None
    original_crf: int | None = None
    scale: int | None = None
    match: str = "crf"
    match_tolerance: float = 0.0
    interval_days: tuple[float, float, int] = (1.0, 3650.0, 61)
    cpu_usd_per_hour: float | None = None

    def __post_init__(self) -> None:
        """Validate the fields."""
        lo, hi, num = self.interval_days
        object.__setattr__(self, "interval_days", (float(lo), float(hi), int(num)))
        checks = [
            (0 < float(lo) < float(hi) and int(num) >= 2,
             f"interval_days must be (min > 0, max > min, num >= 2), got {self.interval_days}"),
            (self.match in MATCH_MODES, f"match must be one of {MATCH_MODES}, got {self.match!r}"),
            (int(self.cluster_size) >= 1 and int(self.model_shared_by or 1) >= 1,
             "cluster_size and model_shared_by must be >= 1"),
            (float(self.horizon_days) > 0, f"horizon_days must be > 0, got {self.horizon_days}"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise StudyError(f"tco.{msg}")

    @property
    def shared_by(self) -> int:
        """Videos sharing one fine-tuned model (``model_shared_by``, default ``cluster_size``)."""
        return int(self.model_shared_by or self.cluster_size)


@dataclass
class Study:
    """A loaded study config: the archival settings plus the ladder, TCO settings and prices."""

    cfg: dict[str, Any]
    archival: ArchivalConfig
    settings: StudySettings
    tco: TcoSettings
    cost: CostModel
    path: str = "config"


def _section(cls: type, cfg: Mapping[str, Any], name: str) -> Any:
    """Dataclass ``cls`` from config section ``name``; unknown keys are an error."""
    sec = dict(cfg.get(name) or {})
    unknown = sorted(set(sec) - {f.name for f in fields(cls)})
    if unknown:
        raise StudyError(f"unknown {name} setting(s) {unknown}")
    try:
        return cls(**sec)
    except (TypeError, ValueError) as exc:
        raise StudyError(f"{name}: {exc}") from None


def load_study(config: PathLike, cfg_options: Mapping[str, Any] | None = None) -> Study:
    """Read a study config (an archival config plus ``study``, ``tco`` and ``cost`` sections)."""
    p = Path(config)
    if not p.is_file():
        raise StudyError(f"{p}: config file not found")
    try:
        cfg = Config.fromfile(str(p))
    except Exception as exc:  # mmengine raises many kinds
        raise StudyError(f"{p}: cannot read config ({(str(exc).splitlines() or [repr(exc)])[0]})") from None
    if cfg_options:
        cfg.merge_from_dict(dict(cfg_options))
    raw = cfg.to_dict()
    settings, tco = _section(StudySettings, raw, "study"), _section(TcoSettings, raw, "tco")
    try:
        cost = CostModel.from_config(dict(raw.get("cost") or {}))
    except ValueError as exc:
        raise StudyError(f"{p}: cost: {exc}") from None
    arch = archival_config(raw, settings.scales[0], settings.crfs[0])
    study = Study(raw, arch, settings, tco, cost, str(p))
    if tco.original_crf is not None and tco.original_crf not in settings.crfs:
        raise StudyError(f"{p}: tco.original_crf {tco.original_crf} is not one of study.crfs {settings.crfs}")
    if tco.scale is not None and tco.scale not in settings.scales:
        raise StudyError(f"{p}: tco.scale {tco.scale} is not one of study.scales {settings.scales}")
    return study


def archival_config(
    raw: Mapping[str, Any], scale: int, crf: int, base: Path | None = None, finetune: bool = True
) -> ArchivalConfig:
    """The archive job's settings at one ladder point (scale, CRF, base checkpoint)."""
    opts: dict[str, Any] = {"codec.scale": scale, "codec.crf": crf, "codec.bitrate": None,
                            "model.generator.upscale_factor": scale}  # fmt: skip
    if base is not None:
        opts["base_checkpoint"] = str(base)
    if not finetune:
        opts["finetune.enabled"] = False
    return load_archival_config(Config(copy.deepcopy(dict(raw))), opts)


# ------------------------------------------------------------------------------------------ BD-rate
@dataclass(frozen=True)
class BDRate:
    """Bjøntegaard delta rate of a test curve against an anchor: % rate change at equal quality."""

    percent: float  # NaN when it cannot be computed (see ``flag``)
    method: str  # 'pchip', 'cubic' (polynomial of degree min(3, n - 1)) or 'linear' (two points)
    flag: str  # 'ok', 'linear_fit', 'no_overlap', 'too_few_points'
    overlap: tuple[float, float] | None
    anchor_points: int
    test_points: int
    overlap_fraction: float | None = None  # overlap width / the anchor's quality range

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN -> None)."""
        return to_jsonable(asdict(self))


def _curve(rates: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(quality, log rate) of the finite points with rate > 0, by quality; equal qualities averaged."""
    r, q = np.asarray(rates, dtype=float), np.asarray(quality, dtype=float)
    keep = np.isfinite(r) & np.isfinite(q) & (r > 0)
    q, lr = q[keep], np.log(r[keep])
    uq = np.unique(q)
    return uq, np.array([lr[q == v].mean() for v in uq])


def _integral(q: np.ndarray, lr: np.ndarray, lo: float, hi: float, method: str) -> float:
    """Exact integral over [lo, hi] of the log-rate curve fitted through (q, lr)."""
    if len(q) == 2:
        return float((np.interp(lo, q, lr) + np.interp(hi, q, lr)) / 2 * (hi - lo))
    if method == "cubic":
        poly = np.polynomial.Polynomial.fit(q, lr, min(3, len(q) - 1)).integ()
        return float(poly(hi) - poly(lo))
    return float(PchipInterpolator(q, lr).integrate(lo, hi))


def bd_rate(
    anchor_rates: Sequence[float], anchor_quality: Sequence[float],
    test_rates: Sequence[float], test_quality: Sequence[float], method: str = "pchip",
) -> BDRate:  # fmt: skip
    """BD-rate (VCEG-M33) of the test curve against the anchor, in %; negative = the test saves bits.

    1. each curve: log(rate) as a function of quality (points sorted by quality, ties averaged);
    2. fit: ``"cubic"``: the VCEG-M33 least-squares polynomial of degree 3 (degree n-1 for n < 4
       points); ``"pchip"``: piecewise cubic Hermite interpolation through the points, as in the
       later reference implementations (more robust with non-polynomial curves); a curve of only two
       points is a straight line whatever the method (``flag = 'linear_fit'``);
    3. overlap: ``lo = max(min q_a, min q_t)``, ``hi = min(max q_a, max q_t)``; none -> NaN
       (``flag = 'no_overlap'``); fewer than 2 usable points on a side -> NaN (``'too_few_points'``);
    4. ``avg = (integral_lo^hi log r_t - integral_lo^hi log r_a) / (hi - lo)`` (exact integrals);
    5. ``BD-rate = (exp(avg) - 1) * 100``; ``overlap_fraction = (hi - lo) / (max q_a - min q_a)`` tells
       how much of the anchor's range the number covers (a small one makes it unreliable).
    """
    if method not in BD_METHODS:
        raise StudyError(f"BD-rate method must be one of {BD_METHODS}, got {method!r}")
    qa, la = _curve(anchor_rates, anchor_quality)
    qt, lt = _curve(test_rates, test_quality)
    n_a, n_t = len(qa), len(qt)
    if min(n_a, n_t) < 2:
        return BDRate(math.nan, method, "too_few_points", None, n_a, n_t)
    lo, hi = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if not hi > lo:
        return BDRate(math.nan, method, "no_overlap", None, n_a, n_t)
    avg = (_integral(qt, lt, lo, hi, method) - _integral(qa, la, lo, hi, method)) / (hi - lo)
    linear = min(n_a, n_t) == 2
    used = "linear" if max(n_a, n_t) == 2 else method
    frac = (hi - lo) / (qa[-1] - qa[0])
    return BDRate(math.expm1(avg) * 100.0, used, "linear_fit" if linear else "ok", (lo, hi), n_a, n_t, frac)


# ------------------------------------------------------------------------------------------ small helpers
def write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON to a temporary file beside ``path`` and ``os.replace`` it into place."""
    atomic_write_json(path, to_jsonable(obj))


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


def charged_bytes(point: Mapping[str, Any], model_shared_by: int = 1) -> float:
    """Bytes charged to one video: ``lr + model / model_shared_by + manifest`` (full: the encode)."""
    d = point["bytes_detail"]
    return float(d["lr"]) + float(d["model"]) / model_shared_by + float(d["manifest"])


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
        tmp = out.with_name(f".{out.stem}.tmp-{secrets.token_hex(4)}{out.suffix}")
        pix = info.pix_fmt.replace("yuvj", "yuv")
        args = ["-y", "-i", str(src), "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", f"crop={w}:{h}:{x}:{y}",
                "-c:v", "ffv1", "-pix_fmt", pix, "-fps_mode", "passthrough"]  # fmt: skip
        if info.color_range in ("tv", "pc"):
            args += ["-color_range", info.color_range]
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            run_ffmpeg([*args, str(tmp)], f"cropping {src} to {w}x{h}")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
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
            tmp = base.with_name(f".base.pth.tmp-{secrets.token_hex(4)}")
            shutil.copyfile(job.work_dir / "finetune" / "finetuned.pth", tmp)
            os.replace(tmp, base)
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


# ------------------------------------------------------------------------------------------ TCO
def tco_curves(
    original: Mapping[str, Any], options: Sequence[tuple[Mapping[str, Any], bool]], study: Study
) -> dict[str, Any]:
    """TCO of the original and of each SR option vs the access interval, and the break-even interval.

    ``original`` is a ``full`` point and ``options`` the SR points compared with it (with whether their
    quality matches it), each with ``bytes`` = the bytes charged to the video (:func:`charged_bytes`).

    1. ``ArchiveScenario(original bytes, SR bytes, restore seconds, I, horizon, fine-tune seconds,
       cluster_size)`` priced by :meth:`CostModel.compare` at each access interval I (log-spaced from
       ``tco.interval_days``) and at I = inf (never retrieved), each option in its cheapest tier;
    2. compute (restore per retrieval, fine-tuning / cluster size once) at ``cost.gpu_usd_per_hour``
       for points restored on a GPU, at ``tco.cpu_usd_per_hour`` (default the same) on a CPU;
    3. break-even: :meth:`CostComparison.break_even` (closed form, independent of I);
    4. ``model_shared_by_needed`` (fine-tuned SR): videos that must share the model for the archive
       to be smaller than the original, ``model / (original - lr - manifest)`` (inf if LR + manifest
       alone are larger).
    """
    t = study.tco
    intervals = [float(x) for x in np.geomspace(*t.interval_days)]
    out: dict[str, Any] = {"intervals_days": intervals, "horizon_days": t.horizon_days, "options": [],
                           "cluster_size": t.cluster_size, "model_shared_by": t.shared_by}  # fmt: skip
    orig_usd = [
        study.cost.cheapest("original", tco_scenario(original, original, i, t))
        for i in [*intervals, math.inf]
    ]
    out["original"] = {"point": original["point"], "crf": original["crf"], "bytes": original["bytes"],
                       "usd": [c.total_usd for c in orig_usd[:-1]], "tier": [c.tier for c in orig_usd[:-1]],
                       "never_usd": orig_usd[-1].total_usd}  # fmt: skip
    for p, matched in options:
        price = study.cost.gpu_usd_per_hour
        if not str(p.get("device", "cpu")).startswith("cuda") and t.cpu_usd_per_hour is not None:
            price = float(t.cpu_usd_per_hour)
        model = replace(study.cost, gpu_usd_per_hour=price)
        cmps = [model.compare(tco_scenario(original, p, i, t)) for i in [*intervals, math.inf]]
        be = cmps[0].break_even()
        d = p["bytes_detail"]
        gap = original["bytes"] - d["lr"] - d["manifest"]
        needed = (d["model"] / gap if gap > 0 else math.inf) if p["variant"] == "sr_finetuned" else None
        out["options"].append({
            "variant": p["variant"], "point": p["point"], "crf": p["crf"], "scale": p["scale"],
            "bytes": p["bytes"], "quality_matched": matched, "restore_seconds": p["seconds"]["restore"],
            "finetune_seconds": p["seconds"]["finetune"], "compute_usd_per_hour": price,
            "usd": [c.sr.total_usd for c in cmps[:-1]], "tier": [c.sr.tier for c in cmps[:-1]],
            "never_usd": cmps[-1].sr.total_usd, "saving_pct_never": cmps[-1].saving_pct,
            "storage_saving_pct": 100.0 * (1 - p["bytes"] / original["bytes"]),
            "break_even": {"regime": be.regime, "interval_days": be.interval_days, "pays_for": be.pays_for},
            "model_shared_by_needed": needed, "model_bytes": d["model"],
        })  # fmt: skip
    return out


def tco_scenario(
    original: Mapping[str, Any], p: Mapping[str, Any], interval: float, t: TcoSettings
) -> ArchiveScenario:
    """The cost model's scenario of option ``p`` against ``original`` at one access interval."""
    return ArchiveScenario(original["bytes"], p["bytes"], float(p["seconds"]["restore"]), interval,
                           t.horizon_days, float(p["seconds"]["finetune"]), int(t.cluster_size))  # fmt: skip
