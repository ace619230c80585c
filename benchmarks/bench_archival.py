"""Archival study on the CPU: how much does per-video fine-tuning buy, and what does the archive weigh?

One real clip (the 21 REDS demo frames, 320x180): frames ``--base-frames`` train a base model from
scratch for ``--base-seconds`` (a stand-in for a pre-trained checkpoint, none being available
offline), then the archive job stores frames ``--clip-frames`` (x2 H.264 CRF 23 LR stream) and
fine-tunes the base on them for ``--finetune-seconds``. Printed: the bytes of each archive member,
the fine-tuning statistics, and PSNR / SSIM / VMAF of the restoration against bicubic upscaling of
the same LR stream, the base model without fine-tuning, and a full-resolution H.264 encode of
about the archive's size. Both runs are resumable (``--work-dir`` keeps their state).

Examples::

    python benchmarks/bench_archival.py                               # ~7 minutes on 2 CPU cores
    python benchmarks/bench_archival.py --finetune-seconds 600 --mid-channels 16 --num-blocks 2
    python benchmarks/bench_archival.py --config configs/archival/tiny_ci.py --out results/arch.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from basicvsr_archival.archival.evaluate import evaluate_archive
from basicvsr_archival.archival.pipeline import run_archive_job
from basicvsr_archival.utils.ffmpeg import atomic_output, frames_to_video

REPO = Path(__file__).resolve().parents[1]
DEMO_FRAMES = REPO.parent / "shared" / "data" / "reds_demo_000"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description="Fine-tuning gain and archive size on one real clip (CPU).")
    parser.add_argument("--frames-dir", default=str(DEMO_FRAMES), help="folder of the clip's PNG frames")
    parser.add_argument("--config", default=str(REPO / "configs" / "archival" / "tiny_ci.py"))
    parser.add_argument("--clip-frames", default="0:11", help="frames archived, start:end (default 0:11)")
    parser.add_argument(
        "--base-frames", default="11:21", help="frames the base is trained on (default 11:21)"
    )
    parser.add_argument("--base-seconds", type=float, default=90.0, help="base training budget")
    parser.add_argument("--finetune-seconds", type=float, default=210.0, help="fine-tuning budget")
    parser.add_argument("--mid-channels", type=int, default=8)
    parser.add_argument("--num-blocks", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is steadiest on shared cores)"
    )
    parser.add_argument("--work-dir", default=str(REPO / "work_dirs" / "bench_archival"))
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--fresh", action="store_true", help="delete the work dir first (no resuming)")
    return parser.parse_args(argv)


def _clip(frames_dir: Path, span: str, out: Path) -> Path:
    """Lossless (x264 QP 0, yuv420p) video of frames ``start:end`` of ``frames_dir``: the master."""
    if out.is_file():
        return out
    start, end = (int(x) for x in span.split(":"))
    files = sorted(frames_dir.glob("*.png"))[start:end]
    if len(files) < 2:
        raise SystemExit(f"error: {frames_dir}: frames {span} hold fewer than 2 PNG files")
    folder = out.with_suffix("")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, f in enumerate(files):
        os.symlink(f.resolve(), folder / f"{i:08d}.png")
    return frames_to_video(folder, out, 25, codec="libx264", crf=0, pix_fmt="yuv420p", preset="ultrafast")


def main(argv: list[str] | None = None) -> int:
    """Run the study and print its figures."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    frames = Path(args.frames_dir)
    clip, other = (
        _clip(frames, args.clip_frames, work / "clip.mkv"),
        _clip(frames, args.base_frames, work / "base.mkv"),
    )
    model = {"model.generator.mid_channels": args.mid_channels, "model.generator.num_blocks": args.num_blocks}
    model.update({"finetune.checkpoint_interval": 50, "finetune.log_interval": 10})
    t0 = time.perf_counter()
    opts = {**model, "finetune.max_iters": 10**6, "finetune.max_seconds": args.base_seconds}
    base_job = run_archive_job(
        args.config, other, work / "base.archive", work / "base.work", True, opts, True
    )
    base = work / "base_checkpoint.pth"
    shutil.copy(base_job.work_dir / "finetune" / "finetuned.pth", base)
    opts = {**model, "finetune.max_iters": 10**6, "finetune.max_seconds": args.finetune_seconds}
    opts["base_checkpoint"] = str(base)
    job = run_archive_job(args.config, clip, work / "clip.archive", work / "clip.work", True, opts, True)
    report = evaluate_archive(
        job.archive, clip, work / "report.json", work_dir=work / "eval", base_checkpoint=base, progress=True
    )
    m = job.manifest
    bft, ft = base_job.manifest["finetune"], m["finetune"]
    src = m["source"]
    print(f"\nclip: {clip.name}, {src['num_frames']} frames {src['width']}x{src['height']}, lossless master")
    scale = m["settings"]["codec"]["scale"]
    print(f"source {src['bytes']} B; model c{args.mid_channels}n{args.num_blocks}, x{scale}")
    print(f"base: {bft['iters']} iterations in {bft['seconds']:.0f} s on frames {args.base_frames}")
    print(f"fine-tuning: {ft['iters']} iterations in {ft['seconds']:.0f} s ({ft['stopped_by']})")
    for name, entry in m["members"].items():
        print(f"  member {name:<14} {entry['bytes']:>9} B")
    print(f"  member {'manifest.json':<14} {m['bytes']['manifest']:>9} B")
    total = m["bytes"]["total"]
    print(f"  archive total         {total:>9} B ({100 * total / m['source']['bytes']:.1f}% of the source)")
    print("\n" + report["markdown"])
    gains = report["gains_db"]
    print(f"\nPSNR gain of the archive: {gains.get('over_bicubic', float('nan')):+.3f} dB over bicubic, "
          f"{gains.get('over_sr_base', float('nan')):+.3f} dB over the base model")  # fmt: skip
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    if args.out:
        summary = {"members": {n: e["bytes"] for n, e in m["members"].items()}, "bytes": m["bytes"]}
        summary.update(finetune=ft, base_finetune=bft, gains_db=gains, variants=report["variants"])
        with atomic_output(args.out) as tmp:
            tmp.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
