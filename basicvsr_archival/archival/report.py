"""Report of an archival study: analysis of the measured points, markdown, plots (matplotlib Agg), JSON.

:func:`analyse` turns the measurements of :func:`study.run_study` into results: the bytes charged to
each video (:func:`study_analysis.charged_bytes`), the BD-rates of every SR option against the
full-resolution encode (:func:`study_analysis.bd_rate`, at equal PSNR and at equal VMAF, per scale) and
the TCO curves with the break-even access interval (:func:`study_analysis.tco_curves`).
:func:`write_report` writes, each atomically:

* ``results.json``: every number (non-finite values as null; a ``pays_for`` bound of null is inf);
* ``report.md``: settings, and per video a summary table, the ladder, the BD-rates, TCO at a few
  access intervals and the plots;
* ``rd_<video>.png``: bytes vs PSNR and vs VMAF, one line per option and scale;
* ``tco_<video>.png``: TCO over the horizon vs the access interval per option, break-evens marked.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from basicvsr_archival.utils.atomic import atomic_path, atomic_write_text

from .package import to_jsonable
from .study_analysis import bd_rate, charged_bytes, tco_curves, tco_scenario, write_json_atomic
from .study_config import LABELS, SR_VARIANTS, VARIANTS, Study
from .throughput import load_profile

MARK_DAYS = (1.0, 7.0, 30.0, 365.0)
NARROW_OVERLAP = 0.5  # BD-rates over less of the anchor's quality range are marked as unreliable
COLORS = {"full": "black", "bicubic": "tab:gray", "sr_base": "tab:blue", "sr_finetuned": "tab:red"}
STYLES = {1: "-", 2: "-", 4: "--"}


# ------------------------------------------------------------------------------------------ analysis
def select_points(points: Sequence[Mapping[str, Any]], study: Study) -> tuple[dict | None, list[tuple]]:
    """The original (``full`` point) and the SR point of each option that the TCO compares with it.

    1. original: the ``full`` point at ``tco.original_crf`` (default the config's ``codec.crf`` when it
       is on the ladder, else the ladder's middle CRF);
    2. each SR option at scale ``tco.scale`` (default the first): ``match='crf'``: the point at the
       same CRF; ``match='psnr'|'vmaf'``: the smallest point whose metric reaches the original's minus
       ``match_tolerance``, or the best one if none does (then ``quality_matched`` is false).
    """
    t, s = study.tco, study.settings
    crf = t.original_crf
    if crf is None:
        crf = study.archival.codec.crf if study.archival.codec.crf in s.crfs else s.crfs[len(s.crfs) // 2]
    original = next((p for p in points if p["variant"] == "full" and p["crf"] == crf), None)
    if original is None:
        return None, []
    scale = t.scale or s.scales[0]
    chosen = []
    for variant in SR_VARIANTS:
        cands = [p for p in points if p["variant"] == variant and p["scale"] == scale]
        if t.match == "crf":
            same = [p for p in cands if p["crf"] == crf]
            if same:
                chosen.append((same[0], True))
            continue
        ref = original.get(t.match)
        cands = [p for p in cands if p.get(t.match) is not None and ref is not None]
        ok = [p for p in cands if p[t.match] >= ref - t.match_tolerance]
        if ok:
            chosen.append((min(ok, key=lambda p: p["bytes"]), True))
        elif cands:
            chosen.append((max(cands, key=lambda p: p[t.match]), False))
    return original, chosen


def analyse(measured: Mapping[str, Any], study: Study) -> dict[str, Any]:
    """Add charged bytes, BD-rates and TCO curves to every video of :func:`study.run_study`'s output."""
    results = copy.deepcopy(dict(measured))
    for video in results["videos"]:
        pts = [dict(p, bytes=charged_bytes(p, study.tco.shared_by), label=LABELS[p["variant"]])
               for p in video["points"]]  # fmt: skip
        pts.sort(key=lambda p: (VARIANTS.index(p["variant"]), p["scale"], p["crf"]))
        video["points"] = pts
        full = [p for p in pts if p["variant"] == "full"]
        video["bd_rate"] = []
        for variant in SR_VARIANTS:
            for scale in study.settings.scales:
                curve = [p for p in pts if p["variant"] == variant and p["scale"] == scale]
                if not curve:
                    continue
                row: dict[str, Any] = {"variant": variant, "scale": scale}
                for metric in ("psnr", "vmaf"):
                    if all(p.get(metric) is not None for p in full + curve):
                        ra, qa = [p["bytes"] for p in full], [p[metric] for p in full]
                        rt, qt = [p["bytes"] for p in curve], [p[metric] for p in curve]
                        row[metric] = bd_rate(ra, qa, rt, qt, study.settings.bd_method).to_dict()
                video["bd_rate"].append(row)
        if study.tco.throughput_profile:
            _profile_restore_seconds(video, pts, study)
        original, options = select_points(pts, study)
        video["tco"] = tco_curves(original, options, study) if original is not None else None
        if video["tco"] is not None:
            _add_marks(video["tco"], original, {p["point"]: p for p, _ in options}, study)
    return to_jsonable(results)


def _profile_restore_seconds(video: dict[str, Any], points: Sequence[dict[str, Any]], study: Study) -> None:
    """SR points' restore seconds from ``tco.throughput_profile`` (the measured ones kept as a check).

    ``seconds = frames * p / rate(p)`` at the video's LR size (:mod:`.throughput`), for the config's
    model size, each point's device and ``restore.precision``.
    """
    profile = load_profile(str(study.tco.throughput_profile))
    w, h = video["crop"]["to"]
    for p in points:
        if p["variant"] not in ("sr_base", "sr_finetuned"):
            continue
        secs = profile.generator_restore_seconds(
            study.cfg["model"]["generator"], p.get("device", "cpu"), study.archival.restore.precision,
            int(video["frames"]), w // p["scale"], h // p["scale"], p["scale"],
        )  # fmt: skip
        p["seconds"] = {**p["seconds"], "restore_measured": p["seconds"]["restore"], "restore": secs}


def _add_marks(tco: dict[str, Any], original: Mapping, points: Mapping[str, Mapping], study: Study) -> None:
    """TCO at the report's marked intervals and at each break-even (exact, from the cost model)."""
    t = study.tco
    cost = study.cost
    tco["original"]["usd_at"] = {
        str(d): cost.cheapest("original", tco_scenario(original, original, d, t)).total_usd for d in MARK_DAYS
    }
    for opt in tco["options"]:
        model = dataclasses.replace(cost, gpu_usd_per_hour=opt["compute_usd_per_hour"])
        p = points[opt["point"]]
        opt["usd_at"] = {
            str(d): model.cheapest("sr", tco_scenario(original, p, d, t)).total_usd for d in MARK_DAYS
        }
        be = opt["break_even"]["interval_days"]
        ok = be is not None and math.isfinite(be)
        usd = model.cheapest("original", tco_scenario(original, p, be, t)).total_usd if ok else None
        opt["break_even"]["usd"] = usd


# ------------------------------------------------------------------------------------------ formatting
def _f(x: Any, spec: str) -> str:
    """Number formatted with ``spec``; ``n/a`` for None."""
    if x is None:
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return format(x, spec)


def format_break_even(be: Mapping[str, Any] | None) -> str:
    """One phrase for a break-even record (regime and interval in days)."""
    if not be:
        return "n/a"
    regime, days = be["regime"], be.get("interval_days")
    if regime == "always":
        return "always cheaper"
    if regime == "never" or days is None:
        return "never pays"
    if regime == "rarer_than":
        return f"pays if accessed less often than every {days:.4g} d"
    ranges = ", ".join(f"{_f(lo, '.4g')}-{_f(hi if hi is not None else math.inf, '.4g')} d"
                       for lo, hi in be.get("pays_for") or [])  # fmt: skip
    return f"pays for intervals in {ranges}"


def _bd(row: Mapping[str, Any] | None, metric: str) -> str:
    """A BD-rate cell: ``-12.3 %``, with the fit when it is not the configured one, or the flag."""
    r = (row or {}).get(metric)
    if r is None:
        return "n/a"
    if r["percent"] is None:
        return f"n/a ({r['flag'].replace('_', ' ')})"
    notes = ["linear, 2 pts"] if r["flag"] == "linear_fit" else []
    if (r.get("overlap_fraction") or 0) < NARROW_OVERLAP:
        notes.append(f"overlap only {100 * (r.get('overlap_fraction') or 0):.0f} % of the anchor's range")
    return f"{r['percent']:+.1f} %" + (f" ({'; '.join(notes)})" if notes else "")


def summary_rows(video: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of the summary table: the original and each SR option of the TCO comparison."""
    tco = video.get("tco")
    if not tco:
        return []
    by_point = {p["point"]: p for p in video["points"]}
    bd = {(r["variant"], r["scale"]): r for r in video["bd_rate"]}
    rows = [{"point": by_point[tco["original"]["point"]], "bd": None, "break_even": None, "anchor": True}]
    for opt in tco["options"]:
        p = by_point[opt["point"]]
        rows.append({"point": p, "bd": bd.get((p["variant"], p["scale"])), "break_even": opt["break_even"],
                     "anchor": False})  # fmt: skip
    return rows


def markdown_report(results: Mapping[str, Any]) -> str:
    """The whole report as markdown (plots referenced by file name)."""
    st = results["settings"]
    s, t, cost = st["study"], st["tco"], st["cost"]
    tiers = ", ".join(
        f"{x['name']} {x['storage_usd_per_gb_month']} $/GB-month + {x['retrieval_usd_per_gb']} $/GB retrieved"
        for x in cost["tiers"]
    )
    cpu = t["cpu_usd_per_hour"] if t["cpu_usd_per_hour"] is not None else cost["gpu_usd_per_hour"]
    fit = "piecewise cubic Hermite" if s["bd_method"] == "pchip" else "cubic polynomial, VCEG-M33"
    shared = t["model_shared_by"] or t["cluster_size"]
    out = [
        "# Does SR archival pay off? Rate-distortion and storage-cost study",
        "",
        f"Config `{results['config']}`, {results['created_utc']}; codec {st['codec']['codec']} preset "
        f"{st['codec']['preset']}, CRFs {s['crfs']}, scales {s['scales']}; fine-tuning budget "
        f"{st['finetune']['max_iters']} iterations / {st['finetune']['max_seconds']:.0f} s; restore device "
        f"{st['restore']['device'] or 'auto'}.",
        "",
        f"* Storage tiers ({_f(cost['gb'], '.4g')} bytes per GB, {cost['days_per_month']:g}-day month): "
        f"{tiers}.",
        f"* Compute: GPU {cost['gpu_usd_per_hour']} $/h, CPU {cpu} $/h, applied to the measured restore "
        f"seconds of each retrieval and to the fine-tuning seconds / cluster size ({t['cluster_size']}).",
        f"* Horizon {t['horizon_days']:g} days; each option in its cheapest tier at every access interval.",
        "* Bytes charged: full = the encode; bicubic = LR stream; base SR = LR + manifest (the base model "
        f"is stored once for the whole archive); fine-tuned SR = LR + model / {shared} + manifest, one "
        "model per ladder point (trained on that point's LR stream).",
        f"* BD-rate: log(bytes) vs quality, {s['bd_method']} fit ({fit}; a straight line with two points), "
        "averaged over the overlapping quality range; negative = fewer bytes than the full-resolution "
        "encode at equal quality.",
        f"* Seconds are wall-clock on this machine with {results.get('torch_threads')} torch thread(s) "
        f"({results.get('wall_seconds', 0):.0f} s for this run of the study).",
    ]
    for video in results["videos"]:
        out += ["", *_video_section(video)]
    return "\n".join(out) + "\n"


def _video_section(video: Mapping[str, Any]) -> list[str]:
    """Markdown of one video: summary, findings, ladder, BD-rates, TCO table, plots."""
    crop = video["crop"]
    size = f"{crop['to'][0]}x{crop['to'][1]}" + (
        f", centre-cropped from {crop['from'][0]}x{crop['from'][1]}" if crop["cropped"] else ""
    )
    vid = video["id"]
    lines = [f"## {vid}", "", f"`{video['original']}`: {video['frames']} frames, {size}.", ""]
    tco = video.get("tco")
    head = "| option | point | bytes | PSNR (dB) | SSIM | VMAF | encode s | fine-tune s | restore s |"
    if tco:
        lines += [f"### Summary (original at CRF {tco['original']['crf']})", "",
                  head + " BD-rate @PSNR | BD-rate @VMAF | break-even |",
                  "| --- | --- |" + " ---: |" * 9 + " --- |"]  # fmt: skip
        for row in summary_rows(video):
            p = row["point"]
            bd = ("anchor", "anchor") if row["anchor"] else (_bd(row["bd"], "psnr"), _bd(row["bd"], "vmaf"))
            be = "-" if row["anchor"] else format_break_even(row["break_even"])
            lines.append(_point_cells(p) + f" {bd[0]} | {bd[1]} | {be} |")
        lines += ["", *_findings(video), ""]
    lines += ["### Rate-distortion ladder", "",
              head.replace("| bytes |", "| bytes | LR | model | manifest |"),
              "| --- | --- |" + " ---: |" * 10]  # fmt: skip
    for p in video["points"]:
        d = p["bytes_detail"]
        cells = _point_cells(p).split(" | ")
        cells[2] += f" | {d['lr']} | {d['model']} | {d['manifest']}"
        lines.append(" | ".join(cells))
    lines += ["", "### BD-rate against the full-resolution encode", "",
              "| option | scale | BD-rate @PSNR | PSNR range (dB) | BD-rate @VMAF | VMAF range |",
              "| --- | ---: | ---: | --- | ---: | --- |"]  # fmt: skip
    for r in video["bd_rate"]:
        rng = {
            m: "-".join(f"{x:.2f}" for x in (r.get(m) or {}).get("overlap") or []) or "none"
            for m in ("psnr", "vmaf")
        }
        lines.append(f"| {LABELS[r['variant']]} | x{r['scale']} | {_bd(r, 'psnr')} | {rng['psnr']} | "
                     f"{_bd(r, 'vmaf')} | {rng['vmaf']} |")  # fmt: skip
    if tco:
        marks = list(tco["original"]["usd_at"])
        cols = " | ".join(f"every {float(d):g} d" for d in marks)
        lines += ["", f"### TCO over {tco['horizon_days']:g} days (USD, cheapest tier)", "",
                  f"| option | bytes | {cols} | never | break-even |",
                  "| --- | ---: |" + " ---: |" * (len(marks) + 1) + " --- |"]  # fmt: skip
        o = tco["original"]
        cells = " | ".join(f"{o['usd_at'][d]:.3g}" for d in marks)
        lines.append(f"| original ({o['point']}) | {o['bytes']:.0f} | {cells} | {o['never_usd']:.3g} | - |")
        for opt in tco["options"]:
            cells = " | ".join(f"{opt['usd_at'][d]:.3g}" for d in marks)
            lines.append(f"| {LABELS[opt['variant']]} ({opt['point']}) | {opt['bytes']:.0f} | {cells} | "
                         f"{opt['never_usd']:.3g} | {format_break_even(opt['break_even'])} |")  # fmt: skip
    if video["points"]:
        lines += ["", f"![rate-distortion](rd_{vid}.png)"]
    if tco:
        lines += ["", f"![TCO vs access interval](tco_{vid}.png)"]
    if not video["points"]:
        lines += ["", "No finished points yet."]
    return lines


def _point_cells(p: Mapping[str, Any]) -> str:
    """The common cells of a point: option, point id, bytes, quality, seconds."""
    sec = p["seconds"]
    quality = f"{_f(p['psnr'], '.3f')} | {_f(p['ssim'], '.4f')} | {_f(p['vmaf'], '.2f')}"
    seconds = f"{sec['encode']:.2f} | {sec['finetune']:.1f} | {sec['restore']:.2f}"
    return f"| {p['label']} | {p['point']} | {p['bytes']:.0f} | {quality} | {seconds} |"


def _findings(video: Mapping[str, Any]) -> list[str]:
    """Plain-language reading of the TCO comparison."""
    tco = video["tco"]
    o = tco["original"]
    out = []
    for opt in tco["options"]:
        name = LABELS[opt["variant"]]
        q = "" if opt["quality_matched"] else " (its quality does not reach the original's)"
        text = (f"* {name} ({opt['point']}){q}: {opt['bytes']:.0f} bytes = "
                f"{100 - opt['storage_saving_pct']:.1f} % of the original's {o['bytes']:.0f}; "
                f"{format_break_even(opt['break_even'])}")  # fmt: skip
        per_retrieval = opt["restore_seconds"] * opt["compute_usd_per_hour"] / 3600
        ft_share = opt["finetune_seconds"] * opt["compute_usd_per_hour"] / 3600 / tco["cluster_size"]
        saved_per_year = (o["never_usd"] - (opt["never_usd"] - ft_share)) * 365 / tco["horizon_days"]
        if saved_per_year > 0:
            text += (f"; one retrieval ({opt['restore_seconds']:.2f} s of compute, {per_retrieval:.2g} USD) "
                     f"costs {per_retrieval / saved_per_year:.3g} years of its storage saving")  # fmt: skip
        pct = opt["saving_pct_never"]
        if pct is not None:
            side = "below" if pct >= 0 else "above"
            text += f"; if never retrieved its TCO is {abs(pct):.1f} % {side} the original's"
        need = opt.get("model_shared_by_needed")
        if opt["variant"] == "sr_finetuned":
            if need is None:
                text += "; LR + manifest alone are larger than the original, so sharing the model cannot help"
            elif need > 1:
                text += (f"; its {opt['model_bytes']} B model only saves storage when shared by "
                         f">= {math.ceil(need)} videos (or a clip {need:.3g}x longer)")  # fmt: skip
        out.append(text + ".")
    return out


# ------------------------------------------------------------------------------------------ plots
def plot_rd(video: Mapping[str, Any], path: Path) -> None:
    """Bytes vs PSNR and bytes vs VMAF, one line per option and scale."""
    fig = Figure(figsize=(11, 4.3), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, metric, unit in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "vmaf", "VMAF")):
        for variant in VARIANTS:
            for scale in sorted({p["scale"] for p in video["points"] if p["variant"] == variant}):
                pts = [p for p in video["points"] if p["variant"] == variant and p["scale"] == scale]
                pts = [p for p in pts if p.get(metric) is not None]
                if not pts:
                    continue
                label = LABELS[variant] + ("" if variant == "full" else f" x{scale}")
                ax.plot([p["bytes"] / 1e3 for p in pts], [p[metric] for p in pts], STYLES.get(scale, "-"),
                        marker="o", color=COLORS[variant], label=label)  # fmt: skip
                for p in pts:
                    ax.annotate(str(p["crf"]), (p["bytes"] / 1e3, p[metric]), textcoords="offset points",
                                xytext=(4, 3), fontsize=7, color=COLORS[variant])  # fmt: skip
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_label))
        ax.set_xlabel("bytes charged to the video (kB, log)")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"{video['id']}: bytes vs {unit.split()[0]} (labels: CRF)", fontsize=10)
    axes[0].legend(fontsize=8)
    _save(fig, path)


def _minor_label(value: float, _pos: Any = None) -> str:
    """Minor log-axis tick label: only at 2x and 5x a power of ten."""
    lead = round(value / 10 ** math.floor(math.log10(value))) if value > 0 else 0
    return f"{value:g}" if lead in (2, 5) else ""


def plot_tco(video: Mapping[str, Any], path: Path) -> None:
    """TCO vs access interval per option (log-log), break-even intervals marked."""
    tco = video["tco"]
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    x = tco["intervals_days"]
    o = tco["original"]
    ax.plot(x, o["usd"], color=COLORS["full"], lw=2.2, label=f"original ({o['point']})")
    for opt in tco["options"]:
        c = COLORS[opt["variant"]]
        be = opt["break_even"]
        days = be.get("interval_days")
        short = {"always": "always cheaper", "never": "never pays"}.get(be["regime"])
        short = short or f"break-even {_f(days, '.3g')} d"
        label = f"{LABELS[opt['variant']]} ({opt['point']}): {short}"
        ax.plot(x, opt["usd"], color=c, lw=1.6, ls=STYLES.get(opt["scale"], "-"), label=label)
        if be["regime"] in ("rarer_than", "window") and days is not None and x[0] <= days <= x[-1]:
            ax.axvline(days, color=c, ls=":", lw=1)
            ax.plot([days], [be["usd"]], "D", color=c, ms=7, mec="black")
            ax.annotate(f"break-even\n{days:.3g} d", (days, be["usd"]), textcoords="offset points",
                        xytext=(6, 8), fontsize=8, color=c)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("access interval (days between retrievals, log)")
    ax.set_ylabel(f"TCO over {tco['horizon_days']:g} days (USD, log)")
    ax.set_title(f"{video['id']}: total cost of ownership vs access frequency\n"
                 f"(cheapest tier per option; cluster size {tco['cluster_size']})", fontsize=10)  # fmt: skip
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig: Figure, path: Path) -> None:
    """Save a PNG (whatever the suffix of ``path``) beside ``path`` under a temporary name, then rename."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def write_report(results: Mapping[str, Any], work_dir: Path) -> dict[str, Path]:
    """Write ``results.json``, the PNG plots and ``report.md`` into ``work_dir``; returns their paths."""
    work = Path(work_dir)
    paths = {"json": work / "results.json", "markdown": work / "report.md"}
    write_json_atomic(results, paths["json"])
    for video in results["videos"]:
        if video["points"]:
            paths[f"rd_{video['id']}"] = work / f"rd_{video['id']}.png"
            plot_rd(video, paths[f"rd_{video['id']}"])
        if video.get("tco"):
            paths[f"tco_{video['id']}"] = work / f"tco_{video['id']}.png"
            plot_tco(video, paths[f"tco_{video['id']}"])
    atomic_write_text(paths["markdown"], markdown_report(results))
    return paths
