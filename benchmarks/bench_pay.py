"""Making SR archival pay on the CPU (issue 15): SR-aware CRFs, the model-size ladder, a catalog plan.

Real footage (``../shared/data/videos/``): one clip of ``--frames`` frames from each of 4 sources (Big
Buck Bunny, Megamind, carphone, tree), made of ``--shots`` spans spread evenly over the source (a
video's shots in a few seconds: what an allocation across a long video's GOPs sees; ``--shots 1``: one
span from the middle), and ``--mixed`` clips cut from 3 sources in turn (scene cuts inside one video),
all centre-cropped to 16:9 and scaled to ``--size``; box.mp4 is held out for the base model.
Config: ``configs/archival/study_pay_tiny_cpu.py`` (c8n1 x2, H.264). Three phases, each
resumable (finished work is kept in ``--work-dir``; run the same command again after a stop):

1. ``sr_aware``: the SR-aware study (:mod:`basicvsr_archival.archival.sr_aware_study`, as
   ``tools/archival_study.py --sr-aware``): per clip, a model fine-tuned on its uniform stream at
   CRF 32, the uniform curve at CRFs 20-44 and the SR-aware curve (x264 zones, a ladder of CRFs 20-44
   in steps of 2) at the bytes of the uniform points at CRFs 24-40, both as measured post-SR PSNR;
   BD-rate of SR-aware vs uniform CRF (goal <= -10 %; NCS reports -15 %) and vs a constant bitrate
   (x264, VBV buffer of one 8-frame segment: the same bits for every GOP);
2. ``ladder``: the clips archived as a collection (k-means clusters of at most 4) with
   ``model.size_ladder`` (c8n1, c16n2, c32n4, all from scratch, the same iterations): per cluster and
   size the post-SR PSNR, restore frames/s at the LR size (a throughput profile measured here) and
   TCO; the size with the lowest TCO within ``--tolerance`` dB of the best is kept;
3. ``plan``: ``tools/plan_storage.py`` on that store under the paper's prices (``ncs2023``) and
   current S3 prices (``aws_s3``), access rates from Zipf's law: the share of videos for which SR
   archival pays and the break-even views per month (the paper: 0.85 -> 2.73 with NCS), for the clips
   as they are and with each priced as K times as long for every K of ``--length-scales`` (same
   content: streams and restores grow, the model and its fine-tuning are paid once; 300: a 2-second
   clip stands for 10 minutes, 30000: for 10 minutes at 100 times the pixels, about 1080p).

Examples::

    python benchmarks/bench_pay.py                                  # ~40 minutes on 2 shared CPU cores
    python benchmarks/bench_pay.py --phases sr_aware --frames 32 --mixed 1 --work-dir work_dirs/bp32
    python benchmarks/bench_pay.py --phases plan --access-model zipf:s=1.1,mean=0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_collection import BASE_SOURCE, SOURCES, VIDEOS, cut

from basicvsr_archival.archival.collection import archive_collection
from basicvsr_archival.archival.sr_aware import concat_segments
from basicvsr_archival.archival.sr_aware_report import write_sr_aware_report
from basicvsr_archival.archival.sr_aware_study import analyse_sr_aware, run_sr_aware_study
from basicvsr_archival.archival.store import Store
from basicvsr_archival.archival.study_config import load_study
from basicvsr_archival.tools import plan_storage
from basicvsr_archival.utils.ffmpeg import probe_video

REPO = Path(__file__).resolve().parents[1]
PHASES = ("sr_aware", "ladder", "plan")
PAPER = "NCS (HotStorage '23): lower tiers pay below 0.85 views/month (25 % of videos), with NCS 2.73 (38 %)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=str(REPO / "configs" / "archival" / "study_pay_tiny_cpu.py"))
    parser.add_argument("--videos-dir", default=str(VIDEOS), help="folder of the real source videos")
    parser.add_argument("--frames", type=int, default=48, help="frames per clip")
    parser.add_argument("--shots", type=int, default=3, help="spans per single-source clip, spread over it")
    parser.add_argument("--mixed", type=int, default=2, help="clips made of 3 sources in turn")
    parser.add_argument("--base-frames", type=int, default=48, help="frames of the held-out base clip")
    parser.add_argument("--size", default="192x108", help="every clip is scaled to WxH")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {PHASES}")
    parser.add_argument("--sizes", default="c8n1,c16n2,c32n4", help="model sizes of the ladder")
    parser.add_argument("--tolerance", type=float, default=0.2, help="ladder: dB below the best size")
    parser.add_argument("--views", type=float, default=1.0, help="ladder: views per month priced")
    parser.add_argument("--access-model", default="zipf:s=1.1,mean=2.0,seed=0", help="plan's access rates")
    parser.add_argument("--min-quality", type=float, help="plan: absolute PSNR floor (default: none)")
    parser.add_argument("--original-crf", type=int, default=23, help="plan: the original's CRF")
    parser.add_argument("--tolerance-plan", type=float, default=1.0, help="plan: dB below the original")
    parser.add_argument("--length-scales", default="300,30000",
                        help="plan: also price clips as K times as long, each K of the list")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on shared cores)")
    parser.add_argument("--work-dir", default=str(REPO / "work_dirs" / "bench_pay"))
    parser.add_argument("--out", help="also write the printed figures as JSON here")
    args = parser.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    if not phases or any(p not in PHASES for p in phases):
        parser.error(f"--phases must be a comma-separated list of {PHASES}")
    if args.frames < 16 or args.mixed < 0 or not 1 <= args.shots <= args.frames // 8:
        parser.error("--frames must be >= 16, --mixed >= 0 and --shots in [1, frames / 8]")
    args.phases = phases
    try:
        args.length_scales = [float(k) for k in args.length_scales.split(",") if k.strip()]
    except ValueError:
        args.length_scales = [-1.0]
    if any(not k > 0 for k in args.length_scales):
        parser.error(f"--length-scales must be numbers > 0, got {args.length_scales!r}")
    return args


def clips(args: argparse.Namespace, folder: Path) -> tuple[list[Path], Path]:
    """One clip per source (``--shots`` spans), ``--mixed`` clips of 3 sources in turn, the base clip."""
    folder.mkdir(parents=True, exist_ok=True)
    srcs = [Path(args.videos_dir) / name for name in SOURCES]
    for src in srcs:
        if not src.is_file():
            sys.exit(f"error: {src}: source video not found (see ../shared/README.md)")
    mid = [max(0, probe_video(s).num_frames // 2 - args.frames // 2) for s in srcs]
    if args.shots == 1:
        out = [cut(s, folder / f"{s.stem}.mkv", m, args.frames, args.size) for s, m in zip(srcs, mid)]
    else:
        out = [shots_clip(args, s, folder) for s in srcs]
    piece = args.frames // 3
    for i in range(args.mixed):
        dst = folder / f"mixed_{i}.mkv"
        if not dst.is_file():
            parts = []
            for j in range(3):
                k = (i + j) % len(srcs)
                start = max(0, mid[k] + (i + 1) * args.frames)  # away from the single-source clip
                start = min(start, max(0, probe_video(srcs[k]).num_frames - piece))
                parts.append(cut(srcs[k], folder / f"mixed_{i}_{j}.mkv", start, piece, args.size))
            concat_segments(parts, dst, folder / f"mixed_{i}.txt")
        out.append(dst)
    base = cut(Path(args.videos_dir) / BASE_SOURCE, folder / "base_clip.mkv", 0, args.base_frames, args.size)
    return out, base


def shots_clip(args: argparse.Namespace, src: Path, folder: Path) -> Path:
    """``--frames`` frames of ``src`` as ``--shots`` equal spans, span k starting at (k + 1) / (shots + 1)."""
    dst = folder / f"{src.stem}_shots{args.shots}.mkv"
    if dst.is_file():
        return dst
    n, piece = probe_video(src).num_frames, args.frames // args.shots
    sizes = [piece] * (args.shots - 1) + [args.frames - piece * (args.shots - 1)]
    parts = []
    for k, size in enumerate(sizes):
        start = min(max(0, (k + 1) * n // (args.shots + 1) - size // 2), max(0, n - size))
        parts.append(cut(src, folder / f"{src.stem}_shot{k}of{args.shots}.mkv", start, size, args.size))
    concat_segments(parts, dst, folder / f"{src.stem}_shots{args.shots}.txt")
    return dst


def phase_sr_aware(args: argparse.Namespace, videos: list[Path], base: Path, work: Path) -> dict:
    """Phase 1: the SR-aware study; prints one line per clip and the mean BD-rate."""
    study = load_study(args.config, {"study.base_pretrain.video": str(base)})
    measured = run_sr_aware_study(study, videos, work / "sr_aware", progress=True)
    analysis = analyse_sr_aware(measured, study.settings.bd_method)
    paths = write_sr_aware_report(measured, analysis, work / "sr_aware")
    sa = measured["sr_aware"]
    print(f"\n[sr_aware] x{measured['scale']}, model at CRF {measured['model_crf']}, ladder {sa['crfs']}, "
          f"{sa['mode']} of {sa['gop']} frames")  # fmt: skip
    print(f"{'clip':<26} {'BD file':>8} {'BD payload':>10} {'BD same GOPs':>12} {'BD vs CBR':>9} "
          f"{'gain dB':>8} {'CRFs':>5}")  # fmt: skip
    for vid, r in analysis["videos"].items():
        g = r["bytes"]["mean_gain_db"]
        print(
            f"{vid:<26} {r['bytes']['bd_rate']:>+7.1f}% {r['payload']['bd_rate']:>+9.1f}% "
            f"{r['same_gops']['bd_rate']:>+11.1f}% {r['cbr']['bd_rate']:>+8.1f}% "
            f"{'-' if g is None else f'{g:+.3f}':>8} {r['distinct_crfs']:>5}"
        )
    s = analysis["summary"]
    print(
        f"mean BD-rate {s['bytes']['mean_bd_rate']:+.1f} % (file bytes), "
        f"{s['payload']['mean_bd_rate']:+.1f} % (payload), "
        f"{s['same_gops']['mean_bd_rate']:+.1f} % vs uniform with the same closed GOPs, "
        f"{s['cbr']['mean_bd_rate']:+.1f} % vs constant bitrate per GOP; "
        f"goal <= {s['goal_bd_rate']:.0f} %: {'met' if s['goal_met'] else 'NOT met'}  ({paths['markdown']})"
    )
    return analysis["summary"] | {"videos": analysis["videos"]}


def phase_ladder(args: argparse.Namespace, videos: list[Path], work: Path) -> dict:
    """Phase 2: the collection with the size ladder; prints each cluster's sizes and the choice."""
    ladder = {"sizes": args.sizes.split(","), "views_per_month": args.views, "prices": "ncs2023",
              "quality_tolerance_db": args.tolerance, "device": "cpu", "precision": "fp32"}  # fmt: skip
    opts = {"model.size_ladder": ladder, "codec.sr_aware.enabled": False, "finetune.eval_frames": 8}
    res = archive_collection(args.config, videos, work / "store", resume=True, cfg_options=opts)
    if not res.ok:
        sys.exit(f"error: collection failed: {res.failed}")
    out = {}
    print(f"\n[ladder] sizes {ladder['sizes']} from scratch; {args.views} views/month, ncs2023 prices")
    print(f"{'cluster':<8} {'videos':>6} {'size':>6} {'PSNR':>8} {'fps':>7} {'ft s':>7} {'model kB':>9} "
          f"{'TCO $/video':>12}")  # fmt: skip
    with Store.open(work / "store", lock=False) as st:
        for c in st.clusters():
            sl = (c["settings"] or {}).get("size_ladder") or {}
            n = len(st.cluster_videos(c["id"]))
            for r in sl.get("rows", []):
                fps = sum(r["fps"].values()) / max(1, len(r["fps"]))
                mark = " <- chosen" if r["size"] == sl["chosen"] else ""
                print(
                    f"{c['id']:<8} {n:>6} {r['size']:>6} {r['psnr']:>8.3f} {fps:>7.2f} "
                    f"{r['finetune_seconds']:>7.1f} {r['model_bytes'] / 1e3:>9.1f} "
                    f"{r['tco_usd_per_video']:>12.3g}{mark}"
                )
            out[c["id"]] = {"videos": n, **sl}
    return out


def phase_plan(args: argparse.Namespace, work: Path) -> dict:
    """Phase 3: plan_storage on the store under both price tables; prints share and break-even."""
    out = {}
    print(f"\n[plan] access {args.access_model}; original = full-resolution CRF {args.original_crf}; "
          f"quality floor: within {args.tolerance_plan} dB PSNR"
          + (f", at least {args.min_quality} dB" if args.min_quality else ""))  # fmt: skip
    scales = sorted({1.0, *args.length_scales})
    floor = "" if args.min_quality is None else f"_min{args.min_quality:g}"
    for prices, k in ((p, k) for p in ("ncs2023", "aws_s3") for k in scales):
        dst = work / (f"plan_{prices}{floor}" + ("" if k == 1.0 else f"_x{k:g}"))
        argv = [str(work / "store"), "--access-model", args.access_model, "-o", str(dst), "--prices", prices,
                "--original-crf", str(args.original_crf), "--tolerance", str(args.tolerance_plan),
                "--length-scale", str(k), "--no-progress"]  # fmt: skip
        if args.min_quality is not None:
            argv += ["--min-quality", str(args.min_quality)]
        plan_storage.main(argv)
        summary = json.loads((dst / "plan.json").read_text())["summary"]
        out[dst.name.removeprefix("plan_")] = summary
        be = summary["break_even_views_per_month"]
        print(
            f"{prices:<8} x{k:<5g} SR pays for {100 * summary['share_of_videos_sr_pays']:.0f} % of videos, "
            f"{100 * summary['share_of_bytes_sr_pays']:.0f} % of bytes; saving ${summary['saving_usd']:.4g}; "
            f"median break-even {'-' if be is None else f'{be:.3g}'} views/month"
        )
    print(PAPER)
    return out


def main(argv: list[str] | None = None) -> int:
    """Cut the clips and run the phases; print the figures."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work_dir)
    t0 = time.perf_counter()
    videos, base = clips(args, work / "clips")
    print(f"{len(videos)} clips of {args.frames} frames at {args.size}; torch {torch.__version__}, CPU, "
          f"{args.threads} thread(s)")  # fmt: skip
    figures: dict = {"args": vars(args)}
    if "sr_aware" in args.phases:
        figures["sr_aware"] = phase_sr_aware(args, videos, base, work)
    if "ladder" in args.phases:
        figures["ladder"] = phase_ladder(args, videos, work)
    if "plan" in args.phases:
        figures["plan"] = phase_plan(args, work)
    print(f"({time.perf_counter() - t0:.0f} s this run)")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
