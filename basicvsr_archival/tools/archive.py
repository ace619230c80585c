"""Archive a video: downscale + encode it, fine-tune the SR model on it, and package both.

Examples::

    python tools/archive.py configs/archival/x4_h264_crf23_finetune.py clip.mp4 -o clip.archive
    python tools/archive.py configs/archival/tiny_ci.py clip.mp4 -o clip.tar --work-dir work_dirs/clip
    python tools/archive.py CONFIG clip.mp4 -o clip.archive --resume     # continue an interrupted run
    python tools/archive.py CONFIG clip.mp4 -o clip.archive --drop-audio # video only (noted in the manifest)

Every audio stream of the source is kept as an archive member (stream-copied into Matroska) and
restored into video outputs; a variable-frame-rate source keeps its frame times the same way.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction

from mmengine.config import DictAction

from basicvsr_archival.archival.pipeline import default_work_dir, run_archive_job
from basicvsr_archival.utils.cli import add_debug_argument, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description="Archive a video as an LR bitstream plus a fine-tuned SR model."
    )
    parser.add_argument("config", help="archival config, e.g. configs/archival/x4_h264_crf23_finetune.py")
    parser.add_argument("video", help="source video")
    parser.add_argument(
        "-o", "--output", required=True, help="archive to create: a directory, or a .tar file"
    )
    parser.add_argument(
        "--work-dir", help="folder for intermediate files and checkpoints (default: OUTPUT.work)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue a run in the work dir (finished stages kept)"
    )
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, default={},
        help="override config entries, e.g. finetune.max_iters=100 base_checkpoint=chkpts/x.pth",
    )  # fmt: skip
    parser.add_argument(
        "--drop-audio", action="store_true",
        help="do not keep the source's audio streams (the manifest records that they were dropped)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the archive job and print a summary."""
    args = parse_args(argv)
    work = args.work_dir or default_work_dir(args.output)
    result = run_archive_job(
        args.config,
        args.video,
        args.output,
        work,
        args.resume,
        args.cfg_options,
        not args.no_progress,
        drop_audio=args.drop_audio,
    )
    m = result.manifest
    members = ", ".join(f"{n} {e['bytes']} B" for n, e in m["members"].items())
    src_bytes = m["source"]["bytes"]
    total = m["bytes"]["total"]
    print(f"archive: {result.archive} ({members}, manifest {m['bytes']['manifest']} B; total {total} B)")
    print(f"source:  {m['source']['name']} {src_bytes} B -> {100.0 * total / src_bytes:.1f}% of the source")
    for line in stream_notes(m):
        print(line)
    ft = m.get("finetune", {})
    if ft.get("iters"):
        line = (
            f"fine-tuning: {ft['iters']} iterations in {ft['seconds']:.1f} s (stopped by {ft['stopped_by']})"
        )
        if ft.get("final_loss") is not None:
            line += f", final loss {ft['final_loss']:.5f}"
        if ft.get("psnr_before") is not None and ft.get("psnr_after") is not None:
            line += (
                f", PSNR {ft['psnr_before']:.2f} -> {ft['psnr_after']:.2f} dB on frames {ft['eval_frames']}"
            )
        print(line)
    if not result.stages_run:
        print("(already complete: nothing was redone)")
    return 0


def stream_notes(manifest: dict) -> list[str]:
    """Lines on the source's audio streams and frame times (what the archive kept of them)."""
    src, audio = manifest["source"], manifest.get("audio") or {}
    lines = []
    if audio.get("dropped") and src.get("has_audio"):
        lines.append("audio:   dropped (--drop-audio); the restored video will be silent")
    for s in audio.get("streams", []):
        kept = "copied" if s["method"] == "copy" else f"stored losslessly as {s['stored_codec']}"
        lines.append(
            f"audio:   {s['member']} {s['codec']} {s['channels']} ch {s['sample_rate']} Hz "
            f"{s['duration']:.2f} s, {kept}"
        )
    if src.get("vfr"):
        stamps = src["timestamps"]
        span = float(stamps["pts"][-1] * Fraction(stamps["time_base"]))
        lines.append(
            f"note:    variable frame rate ({src['num_frames']} frames over {span:.1f} s, nominal "
            f"{float(Fraction(src['fps'])):.3g} fps): frame times kept; restore to .mkv/.mp4 to get them back"
        )
    return lines


if __name__ == "__main__":
    sys.exit(run_cli(main))
