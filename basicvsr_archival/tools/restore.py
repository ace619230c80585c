"""Restore an archive: verify it, rebuild its SR model and super-resolve the LR stream.

Examples::

    python tools/restore.py clip.archive -o restored.mp4
    python tools/restore.py clip.archive -o restored_frames/ --device cuda --fp16
    python tools/restore.py clip.archive -o restored.mp4 --precision bf16 --max-seq-len 20 --overlap 3
    python tools/restore.py clip.archive -o restored.mkv --base-checkpoint chkpts/base.pth
    python tools/restore.py collection.store --video clip-2 -o restored.mkv   # one video of a store
"""

from __future__ import annotations

import argparse
import sys

from basicvsr_archival.archival.restore import PRECISIONS, restore_archive
from basicvsr_archival.archival.store import is_store, open_store_or_error, restore_video
from basicvsr_archival.models.backends.settings import add_backend_arguments, overrides_from_arguments
from basicvsr_archival.utils.cli import add_debug_argument, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description="Restore the original-resolution video from an archive, or a video of a store.",
        epilog="examples: python tools/restore.py clip.tar -o clip.mp4; "
        "python tools/restore.py collection.store --video clip -o clip.mkv",
    )
    parser.add_argument("archive", help="archive directory or .tar, or a store directory (with --video)")
    parser.add_argument("--video", metavar="ID", help="the id of the video to restore from a store")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="output video (.mp4/.mkv/.mov/.avi) or folder of PNG frames (no extension, or ending in '/')",
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the archive's setting)")
    prec = parser.add_mutually_exclusive_group()
    prec.add_argument("--precision", choices=PRECISIONS, help="inference precision (default: the archive's)")
    prec.add_argument(
        "--fp16", action="store_const", const="fp16", dest="precision", help="same as --precision fp16"
    )
    parser.add_argument(
        "--max-seq-len", type=int, help="frames per chunk (default: the archive's; changes the output)"
    )
    parser.add_argument(
        "--overlap",
        type=int,
        metavar="N",
        help="context frames on each side of a chunk (default: the archive's, or min(3, max_seq_len // 4) "
        "with another --max-seq-len; changes the output)",
    )
    parser.add_argument(
        "--base-checkpoint", action="append", default=[],
        help="base checkpoint file or folder (repeatable; also $BASICVSR_ARCHIVAL_CHKPTS and ./chkpts)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output (never an input)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_backend_arguments(parser, None, "the archive's; another one warns that frames may differ")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if is_store(args.archive) and not args.video:
        parser.error(f"{args.archive} is a store: name the video with --video ID (see tools/catalog.py)")
    if args.video and not is_store(args.archive):
        parser.error(f"--video needs a store directory; {args.archive} is not one (no catalog.sqlite)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Restore and print what was written."""
    args = parse_args(argv)
    kwargs = dict(
        device=args.device,
        precision=args.precision,
        max_seq_len=args.max_seq_len,
        overlap=args.overlap,
        base_checkpoint=args.base_checkpoint,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        backend=args.backend,
        backend_settings=overrides_from_arguments(args) or None,
    )
    if args.video:
        with open_store_or_error(args.archive, lock=False) as store:
            res = restore_video(store, args.video, args.output, **kwargs)
    else:
        res = restore_archive(args.archive, args.output, **kwargs)
    chunks = f"chunks of {res.max_seq_len}, overlap {res.overlap}" if res.max_seq_len else "whole video"
    print(
        f"restored {res.num_frames} frames {res.width}x{res.height} @ {res.fps} fps -> {res.output} "
        f"({res.seconds:.1f} s on {res.device}, {res.precision}, {chunks})"
    )
    for note in res.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
