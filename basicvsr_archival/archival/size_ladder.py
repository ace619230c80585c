"""Model-size ladder of a collection: fine-tune each cluster at several sizes, keep the cheapest good one.

With ``model.size_ladder`` (:mod:`.size_ladder_settings`) a collection fine-tunes one model per
(cluster, size) with the same budget (work dir ``STORE/work/clusters/<cid>/<size>``, resumable). A size
whose generator is the config's starts from ``base_checkpoint`` (or the store's seeded base) and is
stored as a delta against the store's base model; any other size starts from its seeded initialisation
and is stored in full (frozen tensors by reference to that initialisation).

Per size: mean post-SR PSNR on the evaluation frames after fine-tuning (``psnr_after``), fine-tuning
seconds, model bytes (:func:`.model_storage.encode_model`), restore frames/s at each LR size of the
cluster (:class:`.throughput.ThroughputProfile`: the configured file, else measured once and kept in
``STORE/work/throughput.json``) and the cluster's TCO: the sum over its N videos of each video's SR
TCO in its cheapest tier (:meth:`.cost.CostModel.cheapest`, steps 1-10 of :mod:`.cost`) with

    sr_bytes  = lr + audio + model / N                   (:func:`.cost.sr_archive_bytes`, no manifest)
    restore_s = F * p / r(p)                              (:meth:`.ThroughputProfile.restore_seconds`)
    I         = days_per_month / views_per_month          (access interval, inf when 0 views)
    finetune  = the size's fine-tuning seconds, shared by the N videos

priced with the price table (:func:`.prices.load_prices`; CPU restores at its CPU price).
Choice (:func:`select_size`): sizes with ``PSNR >= max PSNR - quality_tolerance_db`` are eligible;
the eligible one with the lowest cluster TCO wins (ties: the smaller size).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from . import store as store_mod
from .billing import sr_archive_objects
from .collection_tasks import finetune_task
from .cost import ArchiveScenario, CostModel, OptionCost, sr_archive_bytes
from .engines import Engine, TaskResult
from .finetune import cluster_iters
from .job_config import ArchivalConfig, stored_model_config
from .model_storage import encode_model, read_state_dict
from .pipeline import _reference_init_state
from .prices import load_prices
from .size_ladder_settings import SizeLadderError, SizeLadderSettings
from .throughput import (
    MODEL_SIZES,
    ThroughputProfile,
    load_profile,
    machine_description,
    measure,
    model_size_name,
    save_profile,
)

PROFILE_NAME = "throughput.json"
_TIE_REL = 1e-9  # relative TCO difference below which two sizes tie


# ------------------------------------------------------------------------------------------- selection
def select_size(rows: Sequence[Mapping[str, Any]], tolerance_db: float) -> tuple[str, str]:
    """The chosen size and why, from rows ``{"size", "psnr", "tco_usd"}`` (module docstring's rule).

    A size without a finite PSNR is not eligible; ties in TCO (relative difference < 1e-9) go to the
    smaller size (:data:`.throughput.MODEL_SIZES` order).
    """
    order = {s: i for i, s in enumerate(MODEL_SIZES)}
    good = [r for r in rows if r.get("psnr") is not None and math.isfinite(r["psnr"])]
    if not good:
        raise SizeLadderError("size ladder: no size has a post-SR PSNR (finetune.eval_frames = 0?)")
    best = max(r["psnr"] for r in good)
    eligible = sorted((r for r in good if r["psnr"] >= best - tolerance_db), key=lambda r: order[r["size"]])
    low = min(r["tco_usd"] for r in eligible)
    chosen = next(r for r in eligible if r["tco_usd"] <= low + _TIE_REL * abs(low))
    left = sorted({r["size"] for r in rows} - {r["size"] for r in eligible}, key=order.get)
    reason = (
        f"{chosen['size']}: lowest TCO {chosen['tco_usd']:.6g} USD among sizes within "
        f"{tolerance_db:g} dB of the best PSNR {best:.2f} dB ({', '.join(r['size'] for r in eligible)})"
    )
    if left:
        reason += f"; below the tolerance: {', '.join(left)}"
    return chosen["size"], reason


# ---------------------------------------------------------------------------------------- sizes, jobs
def size_model_config(model: Mapping[str, Any], size: str) -> dict[str, Any]:
    """The model config at ``size``: the config's with the generator's channels and blocks replaced."""
    mid, blocks = MODEL_SIZES[size]
    out = copy.deepcopy(dict(model))
    out["generator"] = {**dict(out.get("generator") or {}), "mid_channels": mid, "num_blocks": blocks}
    return out


def uses_base(cfg: ArchivalConfig, size: str) -> bool:
    """True if ``size`` is the config's generator size (it starts from the config's base)."""
    return model_size_name(cfg.model.get("generator") or {}) == size


def size_config(cfg: ArchivalConfig, size: str) -> ArchivalConfig:
    """The archival config of one size (from scratch, unless it is the config's generator size)."""
    if uses_base(cfg, size):
        return dataclasses.replace(cfg, size_ladder=None)
    model = size_model_config(cfg.model, size)
    return dataclasses.replace(cfg, model=model, base_checkpoint=None, size_ladder=None)


def ladder_jobs(cfg: ArchivalConfig, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """One fine-tuning job per (cluster, size), keyed ``<cid>/<size>``, work dir ``<cluster work>/<size>``."""
    assert cfg.size_ladder is not None
    out = {}
    for cid, job in jobs.items():
        for size in cfg.size_ladder.sizes:
            out[f"{cid}/{size}"] = {
                **job,
                "cfg": size_config(cfg, size),
                "work": str(Path(job["work"]) / size),
            }
    return out


# ------------------------------------------------------------------------------------- throughput, TCO
def ladder_profile(
    ladder: SizeLadderSettings, work: Path, lr_sizes: Iterable[tuple[int, int]], scale: int
) -> ThroughputProfile:
    """The configured profile, else ``work/throughput.json`` with the missing (size, LR size) measured."""
    if ladder.throughput_profile is not None:
        return load_profile(ladder.throughput_profile)
    path = work / PROFILE_NAME
    profile = load_profile(path) if path.is_file() else ThroughputProfile((), {})
    have = {(e.model, e.lr_width, e.lr_height) for e in profile.entries
            if (e.device, e.precision, e.scale) == (ladder.device, ladder.precision, scale)}  # fmt: skip
    entries = list(profile.entries)
    for w, h in sorted(set(lr_sizes)):
        todo = [s for s in ladder.sizes if (s, w, h) not in have]
        if todo:
            if ladder.device == "cuda" and not torch.cuda.is_available():
                raise SizeLadderError("model.size_ladder.device='cuda' but no CUDA device to measure on")
            entries += measure(todo, ladder.device, [ladder.precision], [(w, h)], scale=scale)
    if len(entries) != len(profile.entries):
        profile = ThroughputProfile(tuple(entries), machine_description(ladder.device))
        save_profile(profile, path)
    return profile


def cost_model(ladder: SizeLadderSettings) -> CostModel:
    """The price table's cost model; CPU restores and fine-tuning at its CPU price when it has one."""
    cost = load_prices(ladder.prices)
    if ladder.device == "cpu" and cost.cpu_usd_per_hour is not None:
        cost = dataclasses.replace(cost, gpu_usd_per_hour=cost.cpu_usd_per_hour)
    return cost


def video_tco(
    cost: CostModel, ladder: SizeLadderSettings, *, original_bytes: float, own_bytes: float,
    model_bytes: float, sharing: int, restore_seconds: float, finetune_seconds: float,
) -> OptionCost:  # fmt: skip
    """One video's SR archive in its cheapest tier (:mod:`.cost` steps 1-10; module docstring's inputs)."""
    views = ladder.views_per_month
    interval = math.inf if views == 0 else cost.days_per_month / views
    sr_bytes = sr_archive_bytes(own_bytes, model_bytes, 0, sharing)
    objects = sr_archive_objects(own_bytes, model_bytes, 0, sharing)
    scn = ArchiveScenario(
        float(original_bytes), sr_bytes, restore_seconds, interval, ladder.horizon_days, finetune_seconds,
        sharing, sr_objects=objects,
    )  # fmt: skip
    return cost.cheapest("sr", scn)


# ------------------------------------------------------------------------------------------- training
def train_ladder(
    st: store_mod.Store,
    eng: Engine,
    cfg: ArchivalConfig,
    jobs: Mapping[str, Mapping[str, Any]],
    members: Mapping[str, Sequence[Mapping[str, Any]]],
    base: Mapping[str, Any],
    record: Callable[[TaskResult], None],
    progress: bool,
) -> dict[str, str]:
    """Fine-tune each cluster of ``jobs`` at every size and store its chosen model; failures by cluster.

    ``record`` is called with every finished task (the collection records it in the catalog).
    """
    assert cfg.size_ladder is not None
    trained: dict[str, dict[str, Any]] = {cid: {} for cid in jobs}
    failed: dict[str, str] = {}
    for res in eng.map(
        finetune_task, ladder_jobs(cfg, jobs), kind="gpu", desc="fine-tune", progress=progress
    ):
        record(res)
        cid, size = res.key.rsplit("/", 1)
        if res.error:
            failed.setdefault(cid, f"size {size}: {res.error}")
        else:
            trained[cid][size] = res.value
    todo = [cid for cid in jobs if cid not in failed]
    if not todo:
        return failed
    lr_sizes = {_lr_size(v) for cid in todo for v in members[cid]}
    profile = ladder_profile(cfg.size_ladder, st.root / "work", lr_sizes, cfg.codec.scale)
    cost = cost_model(cfg.size_ladder)
    base_weights = read_state_dict(st.object_path(base["sha256"]))
    for cid in todo:
        try:
            info, data = _choose(st, cfg, trained[cid], members[cid], profile, cost, (base, base_weights))
        except SizeLadderError as exc:
            failed[cid] = str(exc)
            continue
        job = jobs[cid]
        info["iterations"] = cluster_iters(job["iters_per_video"], len(members[cid]), job["max_iters"])
        st.update_cluster(cid, state="done", model_sha=st.put_bytes(data, "model"), settings=info)
    return failed


def _lr_size(video: Mapping[str, Any]) -> tuple[int, int]:
    """(width, height) of a store video's LR stream."""
    enc = video["info"]["encode_lr"]
    return int(enc["width"]), int(enc["height"])


def _own_bytes(st: store_mod.Store, video: Mapping[str, Any]) -> int:
    """Bytes of a store video's own objects: its LR stream and audio streams."""
    info = video["info"]
    shas = [info["lr_object"], *(s["object"] for s in info["audio"]["streams"])]
    return sum(st.object_path(sha).stat().st_size for sha in shas)


def encode_size(
    cfg: ArchivalConfig, size: str, state: Mapping[str, torch.Tensor], base: Mapping[str, Any],
    base_weights: Mapping[str, torch.Tensor],
) -> tuple[bytes, dict[str, Any]]:  # fmt: skip
    """A size's model member: a delta against the store's base, or (other sizes) full with init references."""
    if uses_base(cfg, size):
        return encode_model(state, cfg.storage, base_weights, base["sha256"])
    init = _reference_init_state(size_config(cfg, size))
    data, summary = encode_model(state, dataclasses.replace(cfg.storage, mode="full"), None, None, init)
    if "init_reference" in summary:  # what restore regenerates: this seed's init under this torch
        summary["init_reference"].update(seed=cfg.finetune.seed, torch=torch.__version__.split("+")[0])
    return data, summary


def _choose(
    st: store_mod.Store, cfg: ArchivalConfig, trained: Mapping[str, Mapping[str, Any]],
    videos: Sequence[Mapping[str, Any]], profile: ThroughputProfile, cost: CostModel,
    base: tuple[Mapping[str, Any], Mapping[str, torch.Tensor]],
) -> tuple[dict[str, Any], bytes]:  # fmt: skip
    """One cluster's ladder table, choice and the chosen model (its cluster settings and member bytes)."""
    ladder = cfg.size_ladder
    assert ladder is not None
    rows, encoded = [], {}
    own = [_own_bytes(st, v) for v in videos]
    for size in ladder.sizes:
        stats = trained[size]["stats"]
        encoded[size] = encode_size(cfg, size, read_state_dict(trained[size]["checkpoint"]), *base)
        mid, blocks = MODEL_SIZES[size]
        ft_s = float(stats.get("seconds") or 0.0)
        fps, restore, tco, tiers = {}, [], [], set()
        for v, own_b in zip(videos, own):
            w, h = _lr_size(v)
            frames = int(v["info"]["encode_lr"]["num_frames"])
            rate = profile.pixel_rate(size, ladder.device, ladder.precision, w * h, cfg.codec.scale)
            fps[f"{w}x{h}"] = rate / (w * h)
            secs = profile.restore_seconds(
                size, ladder.device, ladder.precision, frames, w, h, cfg.codec.scale
            )
            opt = video_tco(
                cost, ladder, original_bytes=v["info"]["probe"]["bytes"], own_bytes=own_b,
                model_bytes=len(encoded[size][0]), sharing=len(videos), restore_seconds=secs,
                finetune_seconds=ft_s,
            )  # fmt: skip
            restore.append(secs)
            tco.append(opt.total_usd)
            tiers.add(opt.tier)
        rows.append({
            "size": size, "mid_channels": mid, "num_blocks": blocks, "psnr": stats.get("psnr_after"),
            "psnr_before": stats.get("psnr_before"), "finetune_seconds": ft_s,
            "model_bytes": len(encoded[size][0]),
            "fps": fps, "restore_seconds_per_video": sum(restore) / len(restore), "tco_usd": sum(tco),
            "tco_usd_per_video": sum(tco) / len(tco), "tiers": sorted(tiers),
        })  # fmt: skip
    chosen, reason = select_size(rows, ladder.quality_tolerance_db)
    data, summary = encoded[chosen]
    info = {
        "storage": summary,
        "finetune": trained[chosen]["stats"],
        "model_config": stored_model_config(size_config(cfg, chosen).model),
        "delta_base": uses_base(cfg, chosen),
        "size_ladder": {"settings": ladder.to_dict(), "rows": rows, "chosen": chosen, "reason": reason},
    }
    return info, data


# ------------------------------------------------------------------------------------------------ plot
def plot_ladder(clusters: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """PNG of post-SR PSNR vs restore seconds per retrieval, each size of each ladder cluster (chosen: star).

    ``clusters``: :func:`.store.catalog_json`'s clusters; None (nothing written) when none has a ladder.
    """
    from matplotlib.figure import Figure

    from .report import _save

    ladders = [(c["id"], (c.get("settings") or {}).get("size_ladder")) for c in clusters]
    ladders = [(cid, lad) for cid, lad in ladders if lad]
    if not ladders:
        return None
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for cid, lad in ladders:
        rows = [r for r in lad["rows"] if r["psnr"] is not None]
        xs, ys = [r["restore_seconds_per_video"] for r in rows], [r["psnr"] for r in rows]
        (line,) = ax.plot(xs, ys, "o-", label=f"cluster {cid}")
        for r, x, y in zip(rows, xs, ys):
            ax.annotate(r["size"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            if r["size"] == lad["chosen"]:
                ax.plot([x], [y], "*", ms=16, color=line.get_color(), mec="black")
    ax.set_xscale("log")
    ax.set_xlabel("restore seconds per retrieval (mean per video, throughput profile)")
    ax.set_ylabel("mean post-SR PSNR (dB)")
    ax.set_title(
        "quality vs restore cost per model size (star: chosen, lowest TCO within tolerance)", fontsize=9
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, Path(path))
    return Path(path)
