"""Export a whole BasicVSR++ video model to ONNX and check it with onnxruntime.

Examples::

    python tools/pytorch2onnx.py configs/basicvsr_plusplus_reds4.py \\
        chkpts/basicvsr_plusplus_reds4.pth basicvsrpp_reds4_t10.onnx --verify data/demo_000
    python tools/pytorch2onnx.py configs/tiny_basicvsrpp_c8n1.py none tiny.onnx \\
        --num-frames 5 --no-dynamic-hw --height 180 --width 320

The graph takes ``(1, T, 3, h, w)`` float32 RGB in [0, 1] and returns ``(1, T, 3, 4h, 4w)``
(not clamped). Errors are reported on one line (exit code 1; 2 for bad arguments); ``--debug``
shows the traceback.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from mmengine.config import DictAction

from basicvsr_archival.utils.cli import add_debug_argument, int_at_least, run_cli

DEFAULT_NUM_FRAMES = 10  # = basicvsr_archival.apis.onnx_export.DEFAULT_NUM_FRAMES (imported lazily)
DEFAULT_OPSET = 18


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description="Export a BasicVSR++ video model (the whole network, recurrent loops unrolled over "
        "a fixed number of frames) to a self-contained ONNX file; optionally check it with onnxruntime "
        "against PyTorch on real frames.",
        epilog="The input is (1, T, 3, H, W) float32 RGB in [0, 1], the output (1, T, 3, 4H, 4W). T is "
        "fixed; H and W stay dynamic (64..4096) by default. OUT is written atomically (a temporary file "
        "renamed onto it once complete and, with --verify, verified) and never over an input.",
    )
    parser.add_argument(
        "config", metavar="CONFIG", help="model config (.py), e.g. configs/basicvsr_plusplus_reds4.py"
    )
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="checkpoint .pth (official layout), or 'none' for random weights (pipeline test only)",
    )
    parser.add_argument("output", metavar="OUT.onnx", help="ONNX file to write (replaced if it exists)")
    parser.add_argument(
        "--num-frames",
        type=int_at_least(1),
        default=DEFAULT_NUM_FRAMES,
        metavar="T",
        help=f"frames per chunk, fixed in the graph (default {DEFAULT_NUM_FRAMES}); export time and "
        "graph size grow with T",
    )
    parser.add_argument(
        "--height",
        type=int_at_least(1),
        metavar="H",
        help="frame height of the example input; the only accepted one with --no-dynamic-hw "
        "(default: the --verify frames' height, else 64)",
    )
    parser.add_argument("--width", type=int_at_least(1), metavar="W", help="frame width, as --height")
    parser.add_argument(
        "--dynamic-hw",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep H and W dynamic (default for super-resolution models; several times slower to export) "
        "or fix them to --height/--width (faster export, one size only)",
    )
    parser.add_argument(
        "--opset",
        type=int_at_least(1),
        default=DEFAULT_OPSET,
        metavar="N",
        help=f"ONNX opset (default {DEFAULT_OPSET}; the dynamo exporter needs >= 18, torchscript >= 17)",
    )
    parser.add_argument(
        "--verify",
        metavar="FRAMES_DIR_OR_VIDEO",
        help="run the ONNX file with onnxruntime on the first T frames of this folder of frames or video "
        "and compare with PyTorch; OUT is written only if max |diff| <= --tolerance",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest accepted max |diff| for --verify (default 1e-3)",
    )
    parser.add_argument(
        "--exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="torch.onnx exporter: dynamo (torch.export, default) or the legacy torchscript one (fixed H/W)",
    )
    parser.add_argument(
        "--optimize",
        action="store_true",
        help="run the onnxscript graph optimizer (minutes for the c64n7 model; onnxruntime optimizes the "
        "graph when it loads it anyway)",
    )
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        action=DictAction,
        default={},
        metavar="KEY=VALUE",
        help="override config entries, e.g. model.generator.mid_channels=32",
    )
    add_debug_argument(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and cross-check the arguments (argparse exits with code 2 on errors)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.height is None) != (args.width is None):
        parser.error("give --height and --width together")
    if args.dynamic_hw is False and args.height is None and args.verify is None:
        parser.error("--no-dynamic-hw needs --height/--width (or --verify frames to take the size from)")
    if args.exporter == "torchscript" and args.dynamic_hw:
        parser.error("--exporter torchscript exports a fixed H/W only: drop --dynamic-hw")
    return args


def _load_config(path: str, options: dict):
    """The mmengine Config of ``path`` with ``--cfg-options`` merged (InferenceError on failure)."""
    from mmengine.config import Config

    from basicvsr_archival.apis import InferenceError

    p = Path(path)
    if not p.is_file():
        raise InferenceError(f"{p}: config file not found")
    try:
        cfg = Config.fromfile(str(p))
        if options:
            cfg.merge_from_dict(options)
    except Exception as exc:  # mmengine raises many kinds (SyntaxError, KeyError, ...)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise InferenceError(
            f"{p}: cannot read config ({lines[0] if lines else type(exc).__name__})"
        ) from None
    return cfg


def _check_not_an_input(output: Path, inputs: list[str | None]) -> None:
    """Refuse an OUT that is (or lies inside) one of the inputs."""
    from basicvsr_archival.apis import OutputPathError

    dst = output.resolve()
    for item in inputs:
        if item is None:
            continue
        src = Path(item).resolve()
        if dst == src or (src.is_dir() and src in dst.parents):
            where = "is" if dst == src else "is inside"
            raise OutputPathError(
                f"{output}: output {where} the input {item}: refusing to overwrite the input"
            )
    if output.is_dir():
        raise OutputPathError(f"{output}: is a folder, expected an .onnx file path")


def _read_verify_frames(path: str, num_frames: int):
    """The first ``num_frames`` frames of a folder / video as a (1, T, 3, h, w) tensor in [0, 1]."""
    from basicvsr_archival.apis import FrameSourceError, read_frame_source
    from basicvsr_archival.apis.onnx_export import frames_to_tensor

    source = read_frame_source(path)
    frames = list(itertools.islice(iter(source), num_frames))
    if len(frames) < num_frames:
        raise FrameSourceError(
            f"{path}: has {len(frames)} frames, --num-frames {num_frames} needs at least {num_frames}"
        )
    return frames_to_tensor(frames)


def run(args: argparse.Namespace) -> int:
    """Export (and verify) the model; raise InferenceError on bad input."""
    from basicvsr_archival.apis import init_model
    from basicvsr_archival.apis.onnx_export import export_onnx, export_ready_model

    output = Path(args.output)
    checkpoint = None if args.checkpoint.lower() == "none" else args.checkpoint
    _check_not_an_input(output, [args.config, checkpoint, args.verify])
    cfg = _load_config(args.config, args.cfg_options)
    frames = _read_verify_frames(args.verify, args.num_frames) if args.verify else None
    if checkpoint is None:
        print(
            "warning: CHECKPOINT is 'none': the model keeps its random initial weights (pipeline test only)",
            file=sys.stderr,
        )
    model = init_model(cfg, checkpoint, "cpu", backend="torch")  # export and verify the plain network
    dynamic_hw = args.dynamic_hw
    if dynamic_hw is None:  # default: dynamic where the network allows it
        dynamic_hw = args.exporter == "dynamo" and export_ready_model(model).dynamic_hw_supported
    output.parent.mkdir(parents=True, exist_ok=True)
    size = "dynamic HxW" if dynamic_hw else "fixed size"
    print(
        f"exporting {args.config} (T={args.num_frames}, {size}, opset {args.opset}, {args.exporter})...",
        file=sys.stderr,
    )
    result = export_onnx(
        model,
        output,
        num_frames=args.num_frames,
        height=args.height,
        width=args.width,
        dynamic_hw=dynamic_hw,
        opset=args.opset,
        exporter=args.exporter,
        optimize=args.optimize,
        verify_frames=frames,
        tolerance=args.tolerance,
    )
    hw = "dynamic HxW (64..4096)" if result.dynamic_hw else f"{result.width}x{result.height} only"
    print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, {result.size_bytes} bytes): input "
        f"(1, {result.num_frames}, 3, H, W), {hw}, opset {result.opset}, {result.exporter} exporter, "
        f"{result.seconds:.1f}s"
    )
    if result.max_abs_diff is not None:
        t, h, w = frames.shape[1], frames.shape[3], frames.shape[4]
        print(
            f"verified on {args.verify} ({t} frames of {w}x{h}): max |ONNX - PyTorch| = "
            f"{result.max_abs_diff:.3g} (tolerance {args.tolerance:g})"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run; errors raise (``run_cli`` makes them one line, exit code 1)."""
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_cli(main))
