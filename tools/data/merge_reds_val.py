"""Merge REDS ``val_sharp`` (and its bicubic LR) into the training folders as clips 240-269.

The official BasicVSR / BasicVSR++ REDS configs read all 270 clips from one folder and pick the test
clips by name (REDS4: 000, 011, 015, 020; 'official': 240-269). Example::

    python tools/data/merge_reds_val.py data/REDS/val_sharp data/REDS/train_sharp
    python tools/data/merge_reds_val.py data/REDS/val_sharp_bicubic/X4 data/REDS/train_sharp_bicubic/X4

Clip ``NNN`` of the validation folder becomes ``NNN + 240``. Frames are copied (or hard-linked with
``--link``) atomically; existing target clips are refused unless ``--overwrite``; inputs are untouched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from basicvsr_archival.datasets.io import list_clip_folders, list_frames, place_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description="Copy REDS val clips 000-029 into the train folder as 240-269."
    )
    parser.add_argument("val_dir", help="REDS val folder (val_sharp or val_sharp_bicubic/X4)")
    parser.add_argument("train_dir", help="matching train folder (train_sharp or train_sharp_bicubic/X4)")
    parser.add_argument(
        "--offset", type=int, default=240, help="number added to the clip names (default 240)"
    )
    parser.add_argument("--link", action="store_true", help="hard-link instead of copying")
    parser.add_argument("--overwrite", action="store_true", help="allow writing into existing target clips")
    return parser.parse_args(argv)


def merge_val(
    val_dir: str | Path, train_dir: str | Path, offset: int = 240, link: bool = False, overwrite: bool = False
) -> int:
    """Copy the val clips into ``train_dir`` renamed by ``offset``; returns the number of clips."""
    src, dst = Path(val_dir).resolve(), Path(train_dir).resolve()
    if src == dst:
        raise ValueError(f"{dst}: val and train folders must differ")
    clips = list_clip_folders(src, "REDS val")
    bad = [c for c in clips if not c.isdigit()]
    if bad:
        raise ValueError(f"{src}: clip folders must be numbered, got {bad[:3]}")
    targets = {c: dst / f"{int(c) + offset:03d}" for c in clips}
    existing = [t for t in targets.values() if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: target clip exists (pass --overwrite)")
    for clip in tqdm(clips, desc="merge REDS val", unit="clip"):
        targets[clip].mkdir(parents=True, exist_ok=True)
        for frame in list_frames(src / clip, "REDS val clip"):
            place_file(frame, targets[clip] / frame.name, link)
    return len(clips)


def main(argv: list[str] | None = None) -> None:
    """Run the merge from the command line."""
    args = parse_args(argv)
    n = merge_val(args.val_dir, args.train_dir, args.offset, args.link, args.overwrite)
    print(f"merged {n} clips into {args.train_dir}")


if __name__ == "__main__":
    main()
