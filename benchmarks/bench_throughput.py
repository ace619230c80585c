"""Restore throughput profile: frames/s of each BasicVSR++ size per device, precision and LR size.

Writes the profile JSON the cost model prices retrievals from
(:mod:`basicvsr_archival.archival.throughput`: ``seconds = frames * pixels / rate(pixels)``, the rate
interpolated in log-log between the measured LR sizes), prints it as a table, then checks the
model against a measurement it was not fitted on: the smallest model restoring ``--check-frames``
frames at ``--check-size`` (an LR size between the profiled ones), predicted vs measured seconds.
Entries already in ``--out`` (same size, device, precision, LR size) are kept: re-running resumes.

Examples::

    python benchmarks/bench_throughput.py                                   # CPU fp32, c8n1..c32n4
    python benchmarks/bench_throughput.py --models c8n1 c16n2 c32n4 c64n7 --device cuda \\
        --precision fp32 fp16 bf16 --lr-sizes 320x180 640x360 960x540 --out work_dirs/gpu_profile.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from basicvsr_archival.archival.throughput import (
    MODEL_SIZES,
    ThroughputProfile,
    load_profile,
    machine_description,
    measure,
    save_profile,
)

REPO = Path(__file__).resolve().parents[1]


def _size(text: str) -> tuple[int, int]:
    """``WxH`` as two ints."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WxH") from None
    return w, h


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--models", nargs="+", default=["c8n1", "c16n2", "c32n4"], choices=sorted(MODEL_SIZES)
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--lr-sizes", nargs="+", type=_size, default=[(96, 54), (192, 108), (320, 180)])
    parser.add_argument("--frames", type=int, default=8, help="frames per timed run")
    parser.add_argument("--scale", type=int, default=2, choices=(2, 4))
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--check-size", type=_size, default=(128, 72), help="LR size of the held-out check")
    parser.add_argument("--check-frames", type=int, default=16)
    parser.add_argument("--out", default=str(REPO / "work_dirs" / "throughput" / "profile.json"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure the missing entries, write the profile, print it and the held-out check."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device.split(":")[0]
    out = Path(args.out)
    have = list(load_profile(out).entries) if out.is_file() else []
    done = {(e.model, e.device, e.precision, e.lr_width, e.lr_height, e.scale) for e in have}
    for m in args.models:
        for prec in args.precision:
            sizes = [s for s in args.lr_sizes if (m, device, prec, *s, args.scale) not in done]
            if sizes:
                have += measure([m], args.device, [prec], sizes, args.frames, args.scale)
                save_profile(ThroughputProfile(tuple(have), machine_description(args.device)), out)
    profile = load_profile(out)
    print(f"machine: {profile.machine}")
    print(f"{'model':>6} {'device':>6} {'prec':>5} {'LR size':>9} {'frames/s':>9} {'Mpix/s':>8}")
    for e in sorted(
        profile.entries, key=lambda e: (e.model, e.device, e.precision, e.lr_width * e.lr_height)
    ):
        print(f"{e.model:>6} {e.device:>6} {e.precision:>5} {f'{e.lr_width}x{e.lr_height}':>9} "
              f"{e.fps:>9.2f} {e.pixels_per_s / 1e6:>8.3f}")  # fmt: skip
    m, prec = args.models[0], args.precision[0]
    (w, h), n = args.check_size, args.check_frames
    measured = measure([m], args.device, [prec], [(w, h)], n, args.scale, repeats=1)[0].seconds
    predicted = profile.restore_seconds(m, device, prec, n, w, h, args.scale)
    print(f"check ({m}, {n} frames at {w}x{h}, not profiled): predicted {predicted:.3f} s, "
          f"measured {measured:.3f} s, ratio {predicted / measured:.2f}")  # fmt: skip
    print(f"profile: {out}  ({time.strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, "
          f"{np.__name__} {np.__version__})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
