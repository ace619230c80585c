"""Report of the SR-aware study (:mod:`.sr_aware_study`): markdown, a rate-distortion plot and a JSON.

* ``sr_aware/sr_aware.json``: the measurements and the analysis (non-finite values as null);
* ``sr_aware/sr_aware.md``: per video, the BD-rate of SR-aware vs uniform CRF on post-SR PSNR (file
  and payload bytes), the mean PSNR gain at equal bytes, and the mean over the videos vs the goal;
* ``sr_aware/sr_aware_rd.png``: post-SR PSNR vs kB per video, uniform CRF and SR-aware curves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter

from basicvsr_archival.utils.atomic import atomic_write_text

from .package import to_jsonable
from .report import _save
from .shared_report import _fmt
from .study_analysis import write_json_atomic


def plot_rd(measured: Mapping[str, Any], path: Path) -> None:
    """Post-SR PSNR vs file kB: uniform CRF (labelled by CRF), SR-aware and constant bitrate per budget."""
    videos = measured["videos"]
    cols = min(3, max(1, len(videos)))
    rows = math.ceil(len(videos) / cols) or 1
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (vid, rec) in zip(axes, videos.items()):
        u = sorted(rec["uniform"], key=lambda p: p["bytes"])
        s = sorted(rec["sr_aware"], key=lambda p: p["bytes"])
        ax.plot([p["bytes"] / 1e3 for p in u], [p["psnr"] for p in u], "o-", label="uniform CRF")
        for p in u:
            ax.annotate(str(p["crf"]), (p["bytes"] / 1e3, p["psnr"]), fontsize=7, xytext=(3, -9),
                        textcoords="offset points")  # fmt: skip
        ax.plot(
            [p["bytes"] / 1e3 for p in s], [p["psnr"] for p in s], "s-", color="tab:red", label="SR-aware"
        )
        c = sorted(rec.get("cbr") or [], key=lambda p: p["bytes"])
        if c:
            ax.plot([p["bytes"] / 1e3 for p in c], [p["psnr"] for p in c], "^--", color="tab:gray",
                    label="constant bitrate")  # fmt: skip
        ax.set_xscale("log")
        for axis_fmt in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
            axis_fmt(FormatStrFormatter("%g"))  # plain kB, not 3 x 10^0
        ax.set_title(vid, fontsize=9)
        ax.set_xlabel("LR stream (kB)")
        ax.set_ylabel("post-SR PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(videos) :]:
        ax.set_visible(False)
    _save(fig, path)


def markdown(measured: Mapping[str, Any], analysis: Mapping[str, Any]) -> str:
    """The report text."""
    sm = analysis["summary"]
    sa, budgets = measured["sr_aware"], measured.get("budget_crfs") or []
    at = f"at CRFs {budgets}" if budgets else "(every CRF of the ladder)"
    head = ["video", "segments", "BD-rate file bytes", "BD-rate payload", "vs same closed GOPs",
            "vs constant bitrate", "gain at equal bytes (dB)",
            "distinct CRFs", "measured - predicted (dB)"]  # fmt: skip
    lines = [
        "# SR-aware encoding vs uniform CRF",
        "",
        f"x{measured['scale']}; model of each video fine-tuned on its uniform stream at CRF "
        f"{measured['model_crf']}; {sa.get('mode', 'segments')} of {sa['gop']} frames, "
        f"CRF ladder {sa['crfs']}; "
        f"one SR-aware stream per uniform point {at}, with that point's payload as the byte budget. "
        "Quality: mean post-SR "
        f"PSNR, measured on each final stream. BD-rate ({analysis['method']}): negative = SR-aware needs "
        "fewer bytes at equal post-SR PSNR; the gain at equal bytes is interpolated on the uniform curve.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for vid, r in analysis["videos"].items():
        rec = measured["videos"][vid]
        cells = [vid, rec["segments"], _fmt(r["bytes"]["bd_rate"], "+.1f") + " %",
                 _fmt(r["payload"]["bd_rate"], "+.1f") + " %", _fmt(r["same_gops"]["bd_rate"], "+.1f") + " %",
                 _fmt(r.get("cbr", {}).get("bd_rate"), "+.1f") + " %",
                 _fmt(r["bytes"]["mean_gain_db"], "+.3f"),
                 r["distinct_crfs"], _fmt(r["prediction_error_db"], "+.3f")]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    b, p = sm["bytes"], sm["payload"]
    lines += [
        "",
        f"Mean BD-rate over {b['videos_with_bd_rate']} videos: {_fmt(b['mean_bd_rate'], '+.1f')} % on file "
        f"bytes (median {_fmt(b['median_bd_rate'], '+.1f')} %), {_fmt(p['mean_bd_rate'], '+.1f')} % on "
        f"payload, {_fmt(sm['same_gops']['mean_bd_rate'], '+.1f')} % against uniform CRF with the same "
        f"closed GOPs, {_fmt(sm.get('cbr', {}).get('mean_bd_rate'), '+.1f')} % against a constant bitrate "
        "(x264 with a VBV buffer of one segment: the same bits for every GOP, file bytes); mean gain at "
        f"equal bytes {_fmt(b['mean_gain_db'], '+.3f')} dB. Goal <= "
        f"{sm['goal_bd_rate']:.0f} % (NCS reports -15 %): {'met' if sm['goal_met'] else 'not met'}.",
        "",
        "![rate-distortion](sr_aware_rd.png)",
        "",
    ]
    return "\n".join(lines)


def write_sr_aware_report(
    measured: Mapping[str, Any], analysis: Mapping[str, Any], work_dir: Path
) -> dict[str, Path]:
    """Write ``sr_aware.json``, ``sr_aware.md`` and the plot under ``WORK/sr_aware``; returns their paths."""
    out = Path(work_dir) / "sr_aware"
    paths = {"json": out / "sr_aware.json", "markdown": out / "sr_aware.md", "rd": out / "sr_aware_rd.png"}
    write_json_atomic(to_jsonable({"measured": measured, "analysis": analysis}), paths["json"])
    if measured["videos"]:
        plot_rd(measured, paths["rd"])
    atomic_write_text(paths["markdown"], markdown(measured, analysis))
    return paths
