"""Report of the shared-model study (:mod:`.shared_study`): markdown, two plots and a JSON of every number.

* ``shared/shared.json``: the measurements and the analysis (non-finite values as null);
* ``shared/shared.md``: one table row per cluster size (quality, bytes, fine-tuning seconds per
  video, share of the per-video gain kept, TCO per video) and the plots;
* ``shared/shared_quality.png``: mean PSNR and VMAF vs cluster size, the base model as a line;
* ``shared/shared_tco.png``: bytes and TCO per video vs cluster size at a few access intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from basicvsr_archival.utils.atomic import atomic_write_text

from .package import to_jsonable
from .report import _save
from .study_analysis import write_json_atomic


def _x(rows: list[Mapping[str, Any]]) -> tuple[list[int], list[str]]:
    """Plot positions and tick labels of the cluster sizes (``all`` as its video count)."""
    return list(range(len(rows))), [f"{r['size']}\n({r['clusters']} cl.)" for r in rows]


def _fmt(value: Any, spec: str) -> str:
    """``value`` formatted, or a dash for None / non-finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def plot_quality(analysis: Mapping[str, Any], path: Path) -> None:
    """Mean PSNR and VMAF vs cluster size; the base model as a dashed line."""
    rows = analysis["rows"]
    x, ticks = _x(rows)
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, metric, unit in zip(fig.subplots(1, 2), ("psnr", "vmaf"), ("PSNR (dB)", "VMAF")):
        ys = [r[metric] for r in rows]
        if all(y is None for y in ys):
            ax.set_visible(False)
            continue
        ax.plot(x, ys, "o-", color="tab:red", label="cluster model")
        if analysis["base"].get(metric) is not None:
            ax.axhline(analysis["base"][metric], color="tab:blue", ls="--", label="base model")
        for xi, r in zip(x, rows):
            share = r.get("share_of_per_video_gain")
            if metric == "psnr" and share is not None:
                ax.annotate(
                    f"{100 * share:.0f} %",
                    (xi, r[metric]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
        ax.set_xticks(x, ticks)
        ax.set_xlabel("videos per cluster (clusters)")
        ax.set_ylabel(unit)
        ax.grid(True, alpha=0.3)
        ax.set_title(
            f"mean {unit.split()[0]} over {len(analysis['videos'])} videos"
            + (" (labels: share of per-video gain)" if metric == "psnr" else ""),
            fontsize=10,
        )
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_tco(analysis: Mapping[str, Any], path: Path) -> None:
    """Bytes and fine-tuning seconds per video, TCO per video at a few access intervals, vs cluster size."""
    rows = analysis["rows"]
    x, ticks = _x(rows)
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_b, ax_t = fig.subplots(1, 2)
    ax_b.bar(x, [r["bytes_per_video"] / 1e3 for r in rows], color="tab:gray", label="kB per video")
    ax_b.set_ylabel("bytes charged per video (kB)")
    ax_s = ax_b.twinx()
    ax_s.plot(x, [r["finetune_seconds_per_video"] for r in rows], "o-", color="tab:red")
    ax_s.set_ylabel("fine-tuning seconds per video", color="tab:red")
    ax_b.set_xticks(x, ticks)
    ax_b.set_title("storage and fine-tuning per video", fontsize=10)
    for i, interval in enumerate(r["interval_days"] for r in rows[0]["tco"]):
        label = "never retrieved" if not math.isfinite(interval) else f"retrieved every {interval:g} d"
        line = ax_t.plot(x, [r["tco"][i]["sr_usd"] for r in rows], "o-", label=f"SR archive, {label}")
        ax_t.axhline(rows[0]["tco"][i]["original_usd"], color=line[0].get_color(), ls=":", lw=1)
    ax_t.set_yscale("log")
    ax_t.set_xticks(x, ticks)
    ax_t.set_ylabel(f"TCO per video over {analysis['horizon_days']:g} days (USD, log)")
    ax_t.set_title("TCO per video (dotted: the original, same interval)", fontsize=10)
    ax_t.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    _save(fig, path)


def _row(r: Mapping[str, Any]) -> str:
    """One table row of a cluster size."""
    tco = {t["interval_days"]: t["sr_usd"] for t in r["tco"]}
    share = r["share_of_per_video_gain"]
    cells = [
        r["size"], r["clusters"], sorted(set(r["iterations_per_cluster"])), _fmt(r["psnr"], ".3f"),
        _fmt(r["ssim"], ".4f"), _fmt(r["vmaf"], ".2f"),
        "-" if share is None else f"{100 * share:.0f} %",
        f"{r['bytes_per_video'] / 1e3:.1f}", f"{r['finetune_seconds_per_video']:.1f}",
        *(_fmt(tco.get(d), ".3g") for d in (math.inf, 365.0, 30.0)),
    ]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(analysis: Mapping[str, Any]) -> str:
    """The report text."""
    a = analysis
    base, gain = a["base"], a["per_video_gain_db"]
    head = ["videos / cluster", "clusters", "iterations / cluster", "PSNR (dB)", "SSIM", "VMAF", "gain kept",
            "kB / video", "fine-tune s / video", "TCO/video never read", "yearly", "monthly"]  # fmt: skip
    lines = [
        "# Shared-model study",
        "",
        f"{len(a['videos'])} videos, x{a['scale']} CRF {a['crf']}; "
        f"base model: PSNR {_fmt(base['psnr'], '.2f')} dB, "
        f"VMAF {_fmt(base['vmaf'], '.2f')}. Per-video models gain {_fmt(gain, '.2f')} dB over the base "
        f"(the share kept counts from {a['min_gain_db']} dB).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *(_row(r) for r in a["rows"]),
        "",
        "![quality](shared_quality.png)",
        "",
        "![tco](shared_tco.png)",
        "",
    ]
    return "\n".join(lines)


def write_shared_report(
    measured: Mapping[str, Any], analysis: Mapping[str, Any], work_dir: Path
) -> dict[str, Path]:
    """Write ``shared.json``, ``shared.md`` and the two plots under ``WORK/shared``; returns their paths."""
    out = Path(work_dir) / "shared"
    paths = {
        "json": out / "shared.json",
        "markdown": out / "shared.md",
        "quality": out / "shared_quality.png",
        "tco": out / "shared_tco.png",
    }
    write_json_atomic(to_jsonable({"measured": measured, "analysis": analysis}), paths["json"])
    plot_quality(analysis, paths["quality"])
    plot_tco(analysis, paths["tco"])
    atomic_write_text(paths["markdown"], markdown(analysis))
    return paths
