"""Shared models on the CPU: what one fine-tuned model per cluster keeps of the per-video models' gain.

Real footage (``../shared/data/videos/``): ``--per-source`` segments of ``--frames`` frames from each
of 4 sources (Big Buck Bunny, Megamind, carphone, tree), all centre-cropped to 16:9 and scaled to
``--size`` so that clustering cannot go by resolution; a base model is pre-trained from scratch on a
held-out fifth source (box.mp4) by the study (``study.base_pretrain``). Then the shared-model study
(:mod:`basicvsr_archival.archival.shared_study`, the same code as ``tools/archival_study.py
--cluster-sizes``) archives the segments as a collection at each cluster size (1 = per-video models,
2, 4, all) with ``iters_per_video`` iterations per video in a cluster, capped at ``max_iters`` (the
config: 120 and 160, so a cluster of 4 gets 4/3 of one per-video budget), restores every segment
and prints bytes charged per video, mean PSNR / SSIM / VMAF, fine-tuning seconds per video and the
share of the per-video gain over the base that the shared models keep.

Goal (issue 14): per-video models gain >= 0.3 dB over the base, and clusters of 4 keep >= 80 % of
that gain. Resumable: run the same command again after an interruption (finished stores and
measurements are kept in ``--work-dir``).

Examples::

    python benchmarks/bench_collection.py                        # ~25 minutes on 2 shared CPU cores
    python benchmarks/bench_collection.py --per-source 3 --sizes 1,3,all --work-dir work_dirs/bc3
    python benchmarks/bench_collection.py --cfg-options cluster.iters_per_video=60 cluster.max_iters=80
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from mmengine.config import DictAction

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from basicvsr_archival.archival.shared_report import write_shared_report
from basicvsr_archival.archival.shared_study import analyse_shared, parse_sizes, run_shared_study
from basicvsr_archival.archival.study_config import load_study
from basicvsr_archival.utils.atomic import atomic_path
from basicvsr_archival.utils.ffmpeg import probe_video, run_ffmpeg

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"
SOURCES = ("bigbuckbunny.mp4", "Megamind.avi", "carphone_pristine.mp4", "tree.avi")
BASE_SOURCE = "box.mp4"
GOAL_GAIN_DB, GOAL_SHARE = 0.3, 0.8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=str(REPO / "configs" / "archival" / "study_shared_tiny_cpu.py"))
    parser.add_argument("--videos-dir", default=str(VIDEOS), help="folder of the real source videos")
    parser.add_argument("--per-source", type=int, default=2, help="segments cut from each of the 4 sources")
    parser.add_argument("--frames", type=int, default=16, help="frames per segment")
    parser.add_argument("--base-frames", type=int, default=48, help="frames of the held-out base clip")
    parser.add_argument("--size", default="192x108", help="every segment is scaled to WxH")
    parser.add_argument("--sizes", default="1,2,4,all", help="cluster sizes")
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, default={}, help="override config entries"
    )
    parser.add_argument("--work-dir", default=str(REPO / "work_dirs" / "bench_collection"))
    parser.add_argument("--out", help="also write the printed figures as JSON here")
    args = parser.parse_args(argv)
    if args.per_source < 1 or args.frames < 4:
        parser.error("--per-source must be >= 1 and --frames >= 4")
    return args


def cut(src: Path, dst: Path, start: int, frames: int, size: str) -> Path:
    """``frames`` frames of ``src`` from frame ``start``, cropped to 16:9, scaled to ``size``, as FFV1."""
    if dst.is_file():
        return dst
    w, h = size.split("x")
    vf = (
        f"trim=start_frame={start}:end_frame={start + frames},setpts=PTS-STARTPTS,"
        f"crop='min(iw,ih*16/9)':'min(ih,iw*9/16)',scale={w}:{h}:flags=area,setsar=1,format=yuv420p"
    )
    with atomic_path(dst) as tmp:
        args = ["-y", "-i", str(src), "-an", "-vf", vf, "-c:v", "ffv1", "-f", "matroska", str(tmp)]
        run_ffmpeg(args, f"cutting {src}")
    return dst


def segments(args: argparse.Namespace, folder: Path) -> tuple[list[Path], Path]:
    """The benchmark's segments (evenly spread over each source) and the held-out base clip."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in SOURCES:
        src = Path(args.videos_dir) / name
        if not src.is_file():
            sys.exit(f"error: {src}: source video not found (see ../shared/README.md)")
        n = probe_video(src).num_frames
        room = max(1, n - args.frames)
        for i in range(args.per_source):
            start = room * (2 * i + 1) // (2 * args.per_source)
            out.append(cut(src, folder / f"{Path(name).stem}_{i}.mkv", start, args.frames, args.size))
    base = cut(Path(args.videos_dir) / BASE_SOURCE, folder / "base_clip.mkv", 0, args.base_frames, args.size)
    return out, base


def main(argv: list[str] | None = None) -> int:
    """Cut the segments, run the shared-model study, print the figures and the goal checks."""
    args = parse_args(argv)
    work = Path(args.work_dir)
    t0 = time.perf_counter()
    videos, base = segments(args, work / "segments")
    opts = {"study.base_pretrain.video": str(base), **args.cfg_options}
    study = load_study(args.config, opts)
    measured = run_shared_study(study, videos, work, parse_sizes(args.sizes), engine=args.engine)
    analysis = analyse_shared(measured, study)
    paths = write_shared_report(measured, analysis, work)
    cl = dict(study.cfg.get("cluster") or {})
    print(
        f"\n{len(videos)} segments of {args.frames} frames at {args.size} from {len(SOURCES)} sources; "
        f"x{analysis['scale']} CRF {analysis['crf']}; "
        f"budget {cl.get('iters_per_video')} iterations per video, "
        f"at most {cl.get('max_iters')} per cluster; torch {torch.__version__}, CPU"
    )
    base_q = analysis["base"]
    print(
        f"base model (pre-trained on {BASE_SOURCE}): PSNR {base_q['psnr']:.3f} dB  VMAF {base_q['vmaf']:.2f}"
    )
    print(
        f"{'size':>5} {'clusters':>8} {'iters':>10} {'kB/video':>9} {'PSNR':>8} {'SSIM':>7} {'VMAF':>6} "
        f"{'ft s/video':>10} {'gain dB':>8} {'kept':>6}"
    )
    for r in analysis["rows"]:
        share = r["share_of_per_video_gain"]
        print(
            f"{r['size']:>5} {r['clusters']:>8} {sorted(set(r['iterations_per_cluster']))!s:>10} "
            f"{r['bytes_per_video'] / 1e3:>9.1f} {r['psnr']:>8.3f} {r['ssim']:>7.4f} {r['vmaf']:>6.2f} "
            f"{r['finetune_seconds_per_video']:>10.1f} {r['psnr_gain_over_base_db']:>8.3f} "
            f"{'-' if share is None else f'{100 * share:.0f} %':>6}"
        )
    rows = {r["size"]: r for r in analysis["rows"]}
    gain = analysis["per_video_gain_db"]
    verdict = "met" if gain is not None and gain >= GOAL_GAIN_DB else "NOT met"
    print(f"goal: per-video gain >= {GOAL_GAIN_DB} dB: {gain:.3f} dB -> {verdict}")
    if "4" in rows and rows["4"]["share_of_per_video_gain"] is not None:
        share, r1 = rows["4"]["share_of_per_video_gain"], rows.get("1")
        speed = (
            r1["finetune_seconds_per_video"] / rows["4"]["finetune_seconds_per_video"] if r1 else float("nan")
        )
        print(
            f"goal: clusters of 4 keep >= {100 * GOAL_SHARE:.0f} % of the gain: {100 * share:.0f} % -> "
            f"{'met' if share >= GOAL_SHARE else 'NOT met'}; fine-tuning seconds per video fall {speed:.1f}x"
        )
    print(f"report: {paths['markdown']}  ({time.perf_counter() - t0:.0f} s this run)")
    if args.out:
        Path(args.out).write_text(
            json.dumps({"analysis": analysis, "args": vars(args)}, indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
