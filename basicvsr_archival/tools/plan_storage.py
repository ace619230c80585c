"""Plan where each video of a store or a study goes: the original or LR + SR, in its cheapest tier.

For every video, the cheapest option that meets the quality floor at its access rate (the original,
or an SR archive whose PSNR / VMAF is within ``--tolerance`` of the original's, or at least
``--min-quality``), priced with a price table (``configs/archival/prices``: ncs2023, aws_s3); the
share of videos and of bytes for which SR archival pays, the saving and the break-even access rate.
Writes PLAN_DIR/plan.md, plan.json and plots. A store's videos are restored once to measure them
(kept in PLAN_DIR/measure; re-runs reuse them). Examples::

    python tools/plan_storage.py store/ --access access.csv -o plan/ --prices aws_s3
    python tools/plan_storage.py store/ --access-model zipf:s=1.1,mean=2.0 -o plan/ --min-quality 30
    python tools/plan_storage.py work_dirs/study --access-model zipf:s=1.1,mean=2.0 -o plan/ \\
        --prices ncs2023 --metric vmaf --tolerance 1
    python tools/plan_storage.py store/ --access-model zipf:s=1.1,mean=2.0 -o plan/ --min-quality 30 \\
        --length-scale 300     # 2-second clips standing for 10-minute videos

``access.csv``: header ``id,views_per_month``, ids as in ``tools/catalog.py`` (or the study's video ids).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from basicvsr_archival.archival import store as store_mod
from basicvsr_archival.archival.plan import (
    Policy,
    catalog_tco_curve,
    make_plan,
    parse_zipf,
    read_access_csv,
    scale_length,
    zipf_access,
)
from basicvsr_archival.archival.plan_report import write_plan
from basicvsr_archival.archival.plan_sources import videos_from_store, videos_from_study
from basicvsr_archival.archival.prices import load_prices
from basicvsr_archival.archival.throughput import load_profile
from basicvsr_archival.utils.cli import add_debug_argument, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", help="a store (tools/archive_collection.py) or a study folder (results.json)"
    )
    access = parser.add_mutually_exclusive_group(required=True)
    access.add_argument("--access", help="CSV with id,views_per_month")
    access.add_argument(
        "--access-model", help="zipf:s=S,mean=M[,seed=K]: views per month drawn from Zipf's law"
    )
    parser.add_argument("-o", "--output", required=True, help="plan folder (plan.md, plan.json, plots)")
    parser.add_argument("--prices", default="aws_s3", help="price table name or .py path (default aws_s3)")
    parser.add_argument("--metric", choices=("psnr", "vmaf"), default="psnr", help="quality floor's metric")
    parser.add_argument("--tolerance", type=float, default=0.5, help="allowed loss vs the original's quality")
    parser.add_argument(
        "--min-quality", type=float, help="absolute floor (needed when the original is the source)"
    )
    parser.add_argument(
        "--original-crf", type=int, help="the original is a full-resolution re-encode at this CRF"
    )
    parser.add_argument("--horizon-days", type=float, default=365.0)
    parser.add_argument("--packing", choices=("per_member", "packed", "packed_cold"), default="packed_cold")
    parser.add_argument(
        "--rewrite-days", type=float, default=math.inf, help="days between rewrites (inf: once)"
    )
    parser.add_argument("--throughput-profile", help="price restores from this profile (bench_throughput.py)")
    parser.add_argument(
        "--length-scale", type=float, default=1.0,
        help="price each video as K times as long, same content (streams and restores grow; model does not)",
    )  # fmt: skip
    parser.add_argument("--vmaf", action="store_true", help="also measure VMAF of a store's videos")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if store_mod.is_store(args.source) and args.original_crf is None and args.min_quality is None:
        parser.error("a store's original is the source itself: give --min-quality or --original-crf")
    if not (args.length_scale > 0 and math.isfinite(args.length_scale)):
        parser.error(f"--length-scale must be a number > 0, got {args.length_scale}")
    if args.metric == "vmaf" and store_mod.is_store(args.source) and not args.vmaf:
        parser.error("--metric vmaf on a store needs --vmaf (measure it)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Build the plan, write its report and print the summary."""
    args = parse_args(argv)
    cost = load_prices(args.prices)
    if args.access_model:
        parse_zipf(args.access_model)  # bad specs fail before anything is measured
    policy = Policy(
        args.metric, args.tolerance, args.min_quality, args.horizon_days, args.packing, args.rewrite_days
    )
    src, out = Path(args.source), Path(args.output)
    if store_mod.is_store(src):
        profile = load_profile(args.throughput_profile) if args.throughput_profile else None
        videos = videos_from_store(
            src,
            out,
            original_crf=args.original_crf,
            vmaf=args.vmaf,
            profile=profile,
            progress=not args.no_progress,
        )
    else:
        videos = videos_from_study(src, args.original_crf)
    if args.length_scale != 1.0:
        videos = [scale_length(v, args.length_scale) for v in videos]
    ids = [v.id for v in videos]
    access = read_access_csv(Path(args.access), ids) if args.access else zipf_access(args.access_model, ids)
    plan = make_plan(videos, access, cost, policy, str(args.prices))
    plan["summary"]["length_scale"] = args.length_scale
    plan["curve"] = catalog_tco_curve(videos, cost, policy, list(np.geomspace(0.01, 100.0, 41)))
    paths = write_plan(plan, out)
    s = plan["summary"]
    print(
        f"{s['videos']} videos: SR archival pays for {100 * s['share_of_videos_sr_pays']:.1f} % of them "
        f"({100 * s['share_of_bytes_sr_pays']:.1f} % of the bytes); saving {s['saving_usd']:.6g} USD over "
        f"{args.horizon_days:g} days; median break-even {s['break_even_views_per_month']:.4g} views/month"
    )
    print(f"report: {paths['markdown']} (numbers: {paths['json']})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
