"""Evaluate an archive against the original video: PSNR, SSIM, VMAF of the restoration and of baselines.

Baselines: bicubic upscaling of the LR stream, the base model without fine-tuning, and the original
encoded at full resolution at the CRF whose size is closest to the archive. Example::

    python tools/evaluate_archive.py clip.archive --reference clip.mp4 -o report.json
"""

from __future__ import annotations

import argparse
import sys

from basicvsr_archival.archival.evaluate import evaluate_archive
from basicvsr_archival.utils.cli import add_debug_argument, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description="Compare an archive's restoration with the original video.")
    parser.add_argument("archive", help="archive directory or .tar")
    parser.add_argument("--reference", required=True, help="the original video")
    parser.add_argument("-o", "--output", help="JSON report to write (a .md table is written beside it)")
    parser.add_argument("--work-dir", help="keep the compared videos here (default: a temporary folder)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N for the restorations")
    parser.add_argument(
        "--base-checkpoint", action="append", default=[], help="base checkpoint file or folder"
    )
    parser.add_argument("--crf-trials", type=int, default=6, help="full-resolution encodes in the CRF search")
    parser.add_argument("--no-vmaf", action="store_true", help="skip VMAF")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Evaluate and print the markdown table."""
    args = parse_args(argv)
    report = evaluate_archive(
        args.archive,
        args.reference,
        output=args.output,
        work_dir=args.work_dir,
        device=args.device,
        base_checkpoint=args.base_checkpoint,
        vmaf=not args.no_vmaf,
        crf_trials=args.crf_trials,
        progress=not args.no_progress,
    )
    print(report["markdown"])
    gains = ", ".join(f"{k.replace('over_', 'vs ')} {v:+.2f} dB" for k, v in report["gains_db"].items())
    print(f"\nPSNR gain of the archive: {gains}")
    if not report["reference_matches_source"]:
        print("note: the reference's SHA-256 differs from the archived source's", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
