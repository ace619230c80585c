"""Report of a storage plan (:mod:`.plan`): ``plan.json``, ``plan.md`` and two plots, each written atomically.

* ``tco_vs_views.png``: catalog TCO if every video had the same views per month, all originals vs the
  plan's choices, the median break-even rate marked;
* ``saving_vs_access.png``: each video's saving vs its views per month, beside the histogram of the
  catalog's access rates with the median break-even rate marked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from basicvsr_archival.utils.atomic import atomic_write_text

from .package import to_jsonable
from .report import _save
from .study_analysis import write_json_atomic


def _finite_or(value: float | None, default: float) -> float:
    """``value`` when finite, else ``default``."""
    return float(value) if value is not None and math.isfinite(value) else default


def plot_tco_vs_views(plan: Mapping[str, Any], path: Path) -> None:
    """Catalog TCO vs a uniform access rate; the median break-even marked."""
    c = plan["curve"]
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(c["views_per_month"], c["original_usd"], color="black", lw=2, label="every video: original")
    ax.plot(c["views_per_month"], c["plan_usd"], color="tab:red", lw=1.6, label="the plan's choice per video")
    be = plan["summary"]["break_even_views_per_month"]
    if be is not None and 0 < be < math.inf:
        ax.axvline(be, color="tab:blue", ls=":", label=f"median break-even {be:.3g} views/month")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("views per month (every video, log)")
    ax.set_ylabel(f"catalog TCO over {plan['summary']['policy']['horizon_days']:g} days (USD, log)")
    ax.set_title(f"{plan['summary']['videos']} videos, prices {plan['summary']['prices']}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_saving_vs_access(plan: Mapping[str, Any], path: Path) -> None:
    """Per-video saving vs views per month, and the access-rate histogram with the median break-even."""
    rows = plan["videos"]
    views = np.array([max(r["views_per_month"], 1e-3) for r in rows])
    saving = np.array([r["tco_original_usd"] - r["tco_usd"] for r in rows])
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_s, ax_h = fig.subplots(1, 2)
    sr = np.array([r["choice"] == "sr" for r in rows])
    ax_s.scatter(views[sr], saving[sr], color="tab:red", s=18, label="SR archive chosen")
    ax_s.scatter(views[~sr], saving[~sr], color="black", s=18, label="original kept")
    ax_s.set_xscale("log")
    ax_s.set_xlabel("views per month (log)")
    ax_s.set_ylabel("saving vs the original (USD)")
    ax_s.set_title(f"saving per video: {plan['summary']['saving_usd']:.4g} USD in all", fontsize=10)
    ax_s.grid(True, alpha=0.3)
    ax_s.legend(fontsize=8)
    bins = np.geomspace(views.min(), max(views.max(), views.min() * 1.01), 20)
    ax_h.hist(views, bins=bins, color="tab:gray")
    be = plan["summary"]["break_even_views_per_month"]
    if be is not None and 0 < be < math.inf:
        ax_h.axvline(be, color="tab:blue", ls=":", label=f"median break-even {be:.3g}")
        ax_h.legend(fontsize=8)
    ax_h.set_xscale("log")
    ax_h.set_xlabel("views per month (log)")
    ax_h.set_ylabel("videos")
    ax_h.set_title("the catalog's access rates", fontsize=10)
    _save(fig, path)


def _length_note(k: float) -> str:
    """A sentence on ``--length-scale`` (empty at 1)."""
    if k == 1.0:
        return ""
    return (
        f" Each video is priced as {k:g} times as long with the same content (streams and restores "
        "scale, the model and its fine-tuning do not; quality is the clip's)."
    )


def markdown(plan: Mapping[str, Any]) -> str:
    """The report text: the summary, then one row per video."""
    s = plan["summary"]
    p = s["policy"]
    floor = (
        f"{p['metric']} >= {p['min_quality']}"
        if p["min_quality"] is not None
        else (f"{p['metric']} within {p['tolerance']} of the original")
    )
    be = s["break_even_views_per_month"]
    lines = [
        "# Storage plan",
        "",
        f"{s['videos']} videos, prices `{s['prices']}`, horizon {p['horizon_days']:g} days, "
        f"quality floor: {floor}, packing `{p['packing']}`." + _length_note(s.get("length_scale", 1.0)),
        "",
        f"* SR archival pays for **{100 * s['share_of_videos_sr_pays']:.1f} %** of the videos "
        f"({100 * s['share_of_bytes_sr_pays']:.1f} % of the original bytes);",
        f"* TCO: {s['tco_all_original_usd']:.6g} USD all originals -> {s['tco_plan_usd']:.6g} USD "
        f"with the plan (saving {s['saving_usd']:.6g} USD);",
        f"* median break-even: {_finite_or(be, math.inf):.4g} views per month (SR pays below it).",
        "",
        "| id | views / month | break-even | choice | option | tier | TCO (USD) | TCO original (USD) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in plan["videos"]:
        be_v = _finite_or(r["break_even_views_per_month"], math.inf)
        cells = [r["id"], f"{r['views_per_month']:.4g}", f"{be_v:.4g}", r["choice"], r["option"] or "-",
                 r["tier"], f"{r['tco_usd']:.4g}", f"{r['tco_original_usd']:.4g}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "![TCO vs views](tco_vs_views.png)", "", "![saving vs access](saving_vs_access.png)", ""]
    return "\n".join(lines)


def write_plan(plan: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``plan.json``, ``plan.md`` and the plots into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "plan.json",
        "markdown": out / "plan.md",
        "tco": out / "tco_vs_views.png",
        "saving": out / "saving_vs_access.png",
    }
    write_json_atomic(to_jsonable(dict(plan)), paths["json"])
    plot_tco_vs_views(plan, paths["tco"])
    plot_saving_vs_access(plan, paths["saving"])
    atomic_write_text(paths["markdown"], markdown(plan))
    return paths
