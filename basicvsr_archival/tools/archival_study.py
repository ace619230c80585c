"""Does SR archival pay off? Run the rate-distortion / storage-cost study on videos and write a report.

For each video and each (CRF, scale) of the config's ladder: full-resolution encode, LR encode +
bicubic, LR encode + base SR model, LR encode + content-aware (fine-tuned) SR model; bytes, PSNR,
SSIM, VMAF and seconds of each, BD-rates against the full-resolution encode, TCO vs access interval
with the break-even point. Writes WORKDIR/report.md, WORKDIR/results.json and PNG plots. Finished
points are kept in WORKDIR and skipped on a re-run (interrupt and re-run to resume). Examples::

    python tools/archival_study.py configs/archival/study_default.py clip.mp4 -o work_dirs/study
    python tools/archival_study.py configs/archival/study_tiny_ci.py a.mkv b.mkv -o work_dirs/ci \\
        --cfg-options study.crfs=[23,33] tco.cluster_size=10
    python tools/archival_study.py CONFIG clip.mp4 -o work_dirs/study --report-only \\
        --cfg-options tco.horizon_days=730     # re-price the finished points, measure nothing
    python tools/archival_study.py configs/archival/study_tiny_ci.py a.mkv b.mkv c.mkv -o work_dirs/sh \
        --cluster-sizes 1,2,4,all            # shared-model study: one model per cluster of N videos
    python tools/archival_study.py configs/archival/study_pay_tiny_cpu.py a.mkv b.mkv -o work_dirs/sra \
        --sr-aware                           # SR-aware CRFs vs uniform CRF: BD-rate on post-SR PSNR

With ``--cluster-sizes`` the tool runs the shared-model study instead of the ladder: the videos are
archived as a collection once per cluster size (budget: the config's ``cluster`` section), each
restored with its cluster's model, its own per-video model (size 1) and the base model; it writes
WORKDIR/shared/shared.md, shared.json and plots of quality and TCO vs cluster size.

With ``--sr-aware`` (the config needs ``codec.sr_aware``) it compares SR-aware encoding with uniform
CRF: each video's model is fine-tuned on its uniform stream at the middle ladder CRF (``--shared-crf``
picks another), the uniform curve is measured at every ladder CRF and the SR-aware curve at each
uniform point's bytes (or those at ``study.sr_aware_budgets``), next to a constant bitrate at the same
budgets, all as post-SR PSNR; it writes WORKDIR/sr_aware/sr_aware.md, sr_aware.json and
sr_aware_rd.png with the BD-rates and the PSNR gain at equal bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from mmengine.config import DictAction
from tqdm import tqdm

from basicvsr_archival.archival.report import analyse, format_break_even, summary_rows, write_report
from basicvsr_archival.archival.shared_report import write_shared_report
from basicvsr_archival.archival.shared_study import analyse_shared, parse_sizes, run_shared_study
from basicvsr_archival.archival.sr_aware_report import write_sr_aware_report
from basicvsr_archival.archival.sr_aware_study import analyse_sr_aware, run_sr_aware_study
from basicvsr_archival.archival.study import run_study
from basicvsr_archival.archival.study_config import Study, StudyError, load_study
from basicvsr_archival.utils.cli import add_debug_argument, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description="Rate-distortion and storage-cost study of SR archival.")
    parser.add_argument("config", help="study config, e.g. configs/archival/study_default.py")
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="source videos (never modified)")
    parser.add_argument("-o", "--work-dir", required=True, help="study folder: points, archives, report")
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, default={},
        help="override config entries, e.g. study.crfs=[23,28] tco.cluster_size=10 restore.device=cpu",
    )  # fmt: skip
    parser.add_argument(
        "--report-only", action="store_true", help="measure nothing: analyse the finished points"
    )
    parser.add_argument(
        "--threads", type=int, help="CPU threads for torch (default: its own choice); timings depend on it"
    )
    parser.add_argument(
        "--cluster-sizes", help="shared-model study at these cluster sizes, e.g. 1,2,4,all (not the ladder)"
    )
    parser.add_argument(
        "--sr-aware",
        action="store_true",
        help="SR-aware vs uniform CRF on post-SR PSNR (not the ladder)",
    )
    parser.add_argument(
        "--shared-crf", type=int,
        help="CRF of the shared-model study (default: middle study CRF) or of the --sr-aware model "
        "(default: middle SR-aware ladder CRF)",
    )  # fmt: skip
    parser.add_argument(
        "--engine", choices=("local", "ray"), default="local", help="shared-model study engine"
    )
    parser.add_argument(
        "--ray-address", help="Ray cluster address for --engine ray (default: start Ray here)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug_argument(parser)
    return parser.parse_args(argv)


def _log(msg: str) -> None:
    """A log line on stderr that does not break the progress bars."""
    tqdm.write(msg, file=sys.stderr)


def _interrupted() -> int:
    """Say how to continue after Ctrl-C; exit status 130."""
    print(
        "error: interrupted; run the same command again to continue (finished work is kept)", file=sys.stderr
    )
    return 130


def main(argv: list[str] | None = None) -> int:
    """Run the study, write the report and print the summary."""
    args = parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            raise StudyError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    study = load_study(args.config, args.cfg_options)
    if args.cluster_sizes and args.sr_aware:
        raise StudyError("give --cluster-sizes or --sr-aware, not both")
    if args.cluster_sizes:
        return shared_main(args, study)
    if args.sr_aware:
        return sr_aware_main(args, study)
    try:
        measured = run_study(
            study, args.videos, args.work_dir, progress=not args.no_progress, compute=not args.report_only,
            log=_log,
        )  # fmt: skip
    except KeyboardInterrupt:
        return _interrupted()
    results = analyse(measured, study)
    paths = write_report(results, Path(args.work_dir))
    for video in results["videos"]:
        print(f"{video['id']}: {len(video['points'])} points")
        for row in summary_rows(video):
            p = row["point"]
            be = "original" if row["anchor"] else format_break_even(row["break_even"])
            quality = (
                f"PSNR {p['psnr']:.2f} dB, VMAF {p['vmaf'] if p['vmaf'] is None else round(p['vmaf'], 2)}"
            )
            print(f"  {p['point']:<22} {p['bytes']:>10.0f} B  {quality}  {be}")
    print(f"report: {paths['markdown']} (numbers: {paths['json']})")
    return 0


def shared_main(args: argparse.Namespace, study: Study) -> int:
    """Run the shared-model study, write its report and print one line per cluster size."""
    sizes = parse_sizes(args.cluster_sizes)
    try:
        measured = run_shared_study(
            study, args.videos, args.work_dir, sizes, crf=args.shared_crf, engine=args.engine,
            ray_address=args.ray_address, progress=not args.no_progress, log=_log,
        )  # fmt: skip
    except KeyboardInterrupt:
        return _interrupted()
    analysis = analyse_shared(measured, study)
    paths = write_shared_report(measured, analysis, Path(args.work_dir))
    for r in analysis["rows"]:
        share = r["share_of_per_video_gain"]
        kept = "-" if share is None else f"{100 * share:.0f} %"
        print(
            f"cluster size {r['size']:>4}: {r['clusters']} clusters, PSNR {r['psnr']:.3f} dB, "
            f"{r['bytes_per_video'] / 1e3:.1f} kB/video, "
            f"fine-tune {r['finetune_seconds_per_video']:.1f} s/video, "
            f"gain kept {kept}"
        )
    print(f"report: {paths['markdown']} (numbers: {paths['json']})")
    return 0


def sr_aware_main(args: argparse.Namespace, study: Study) -> int:
    """Run the SR-aware study, write its report and print one line per video and the mean BD-rate."""
    try:
        measured = run_sr_aware_study(
            study, args.videos, args.work_dir, crf=args.shared_crf, progress=not args.no_progress, log=_log
        )
    except KeyboardInterrupt:
        return _interrupted()
    analysis = analyse_sr_aware(measured, study.settings.bd_method)
    paths = write_sr_aware_report(measured, analysis, Path(args.work_dir))
    for vid, r in analysis["videos"].items():
        gain = r["bytes"]["mean_gain_db"]
        print(
            f"{vid}: BD-rate {r['bytes']['bd_rate']:+.1f} % (file bytes), {r['payload']['bd_rate']:+.1f} % "
            f"(payload), gain at equal bytes {'-' if gain is None else f'{gain:+.3f} dB'}"
        )
    mean = analysis["summary"]["bytes"]["mean_bd_rate"]
    print(f"mean BD-rate: {'-' if mean is None else f'{mean:+.1f} %'}; report: {paths['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
