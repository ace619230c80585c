"""Restore a video or a folder of frames with a BasicVSR++ config and checkpoint (x4 super-resolution).

Examples::

    python demo/restoration_video_demo.py configs/basicvsr_plusplus_reds4.py \\
        chkpts/basicvsr_plusplus_reds4.pth data/demo_000 results/demo_000
    python demo/restoration_video_demo.py configs/tiny_basicvsrpp_c8n1.py none \\
        --synthetic results/quickstart.mp4

Errors are reported on one line (exit code 1; 2 for bad arguments); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import time

from basicvsr_archival.models.backends.settings import (
    BackendSettings,
    add_backend_arguments,
    overrides_from_arguments,
)
from basicvsr_archival.utils.cli import add_debug_argument, int_at_least, parse_int, run_cli

PRECISIONS = ("fp32", "fp16", "bf16")


def _window(text: str) -> int:
    """argparse type: 0 or an odd integer >= 1."""
    value = parse_int(text)
    if value < 0 or (value > 0 and value % 2 == 0):
        raise argparse.ArgumentTypeError(f"must be 0 (recurrent) or an odd number, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description="Restore (x4 super-resolve) a video or a folder of frames with BasicVSR++.",
        epilog="Output: a folder of PNG frames named like the input frames (%08d.png for a video input) for "
        "a path without extension or ending in '/', or a .mp4/.mkv/.mov/.avi video (x264, input frame rate; "
        "25 fps for a frame folder); other extensions are refused. Outputs are written atomically, never "
        "over the input, and an existing video or same-named frame only with --overwrite.",
    )
    parser.add_argument(
        "config", metavar="CONFIG", help="model config (.py), e.g. configs/basicvsr_plusplus_reds4.py"
    )
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="checkpoint .pth (official layout, e.g. chkpts/basicvsr_plusplus_reds4.pth), "
        "or 'none' for random weights (pipeline test only)",
    )
    parser.add_argument(
        "input",
        metavar="IN",
        nargs="?",
        help="folder of frames (png/jpg/jpeg/bmp, sorted by name) or a video file; omit with --synthetic",
    )
    parser.add_argument(
        "output",
        metavar="OUT",
        help="output folder of PNG frames (no extension, or ending in '/'), or a .mp4/.mkv/.mov/.avi file",
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="restore 12 generated frames (ffmpeg testsrc2, 160x96) instead of IN; needs no data",
    )
    parser.add_argument(
        "--window-size",
        type=_window,
        default=0,
        metavar="N",
        help="0 (default): recurrent over the sequence; odd N: sliding window of N frames per output frame",
    )
    parser.add_argument(
        "--max-seq-len",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="recurrent mode: restore in chunks of N frames to bound memory (default: whole sequence)",
    )
    parser.add_argument(
        "--overlap",
        type=int_at_least(0),
        default=None,
        metavar="N",
        help="with --max-seq-len: N frames of context on each side of a chunk, restored but not kept, so "
        "chunk borders do not show (default min(3, max_seq_len // 4); 0: plain consecutive chunks)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="compute precision (default fp32); fp16 needs CUDA, bf16 works on CUDA and CPU",
    )
    parser.add_argument("--fp16", action="store_true", help="shorthand for --precision fp16")
    parser.add_argument("--crf", type=int, default=18, help="x264 quality for video output (default 18)")
    parser.add_argument(
        "--no-audio",
        action="store_true",
        help="do not carry the audio of a video input into a video output (default: carry it)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output video, or same-named frames in the output folder (never an input)",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    add_debug_argument(parser)
    add_backend_arguments(parser, "auto", "auto")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and cross-check the arguments (argparse exits with code 2 on errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.synthetic and args.input is not None:
        parser.error("give either IN or --synthetic, not both")
    if not args.synthetic and args.input is None:
        parser.error("the following arguments are required: IN (or use --synthetic)")
    if args.fp16 and args.precision not in (None, "fp16"):
        parser.error(f"--fp16 contradicts --precision {args.precision}")
    args.precision = "fp16" if args.fp16 else (args.precision or "fp32")
    if args.overlap:
        if args.window_size:
            parser.error("--overlap applies to the recurrent mode, not to --window-size")
        if args.max_seq_len is None:
            parser.error("--overlap needs --max-seq-len (the whole sequence has no chunk borders)")
        if 2 * args.overlap >= args.max_seq_len:
            parser.error(
                f"--overlap {args.overlap} leaves no core frames in chunks of --max-seq-len "
                f"{args.max_seq_len}: need 2 * overlap < max_seq_len"
            )
    return args


def run(args: argparse.Namespace) -> int:
    """Restore ``args.input`` into ``args.output``; raise InferenceError on bad input."""
    from basicvsr_archival.apis import (
        InferenceError,
        check_output_path,
        init_model,
        read_frame_source,
        resolve_device,
        restoration_video_inference,
        synthetic_frame_source,
    )
    from basicvsr_archival.apis.streaming import resolve_overlap
    from basicvsr_archival.utils.frame_times import vfr_warning

    source = synthetic_frame_source() if args.synthetic else read_frame_source(args.input)
    check_output_path(source.path, args.output, args.overwrite, source)  # before any work
    device = resolve_device(args.device)
    if args.precision == "fp16" and device.type != "cuda":
        raise InferenceError("--fp16 needs a CUDA device: use --precision bf16 or fp32 on the CPU")
    checkpoint = None if args.checkpoint.lower() == "none" else args.checkpoint
    if checkpoint is None:
        print(
            "warning: CHECKPOINT is 'none': the model keeps its random initial weights, so the output "
            "is NOT a real restoration (pipeline test only)",
            file=sys.stderr,
        )
    settings = BackendSettings.from_env().replace(**overrides_from_arguments(args))
    model = init_model(args.config, checkpoint, device, backend=args.backend, backend_settings=settings)
    if args.window_size:
        mode = f"sliding window of {args.window_size}"
    elif args.max_seq_len:
        overlap = resolve_overlap(args.max_seq_len, args.overlap)
        mode = f"chunks of {args.max_seq_len}, overlap {overlap}"
    else:
        mode = "whole sequence"
    print(
        f"restoring {source.description} ({source.num_frames} frames, {source.width}x{source.height}) "
        f"on {device} ({args.precision}, {mode})",
        file=sys.stderr,
    )
    if source.kind == "video" and (warning := vfr_warning(source.path, source.fps)):
        print(warning, file=sys.stderr)
    start = time.perf_counter()
    result = restoration_video_inference(
        model,
        source,
        args.output,
        max_seq_len=args.max_seq_len,
        window_size=args.window_size,
        precision=args.precision,
        progress=not args.no_progress,
        crf=args.crf,
        overlap=args.overlap,
        audio=not args.no_audio,
        overwrite=args.overwrite,
    )
    elapsed = time.perf_counter() - start
    print(
        f"wrote {result.num_frames} frames of {result.width}x{result.height} to {result.output_path} "
        f"in {elapsed:.1f}s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run; errors raise (``run_cli`` makes them one line, exit code 1)."""
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_cli(main))
