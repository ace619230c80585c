"""Cut one long frame sequence into REDS-layout clips: ``OUT/000/00000000.png``, ``OUT/001/...``.

Example::

    python tools/data/cut_clips.py data/lectures/lecture01/GT data/lectures_reds/GT --clip-length 100

Frames are taken in natural filename order and renumbered from 0 inside each clip; a last clip shorter
than ``--min-length`` (default: clip length) is dropped. Files are copied (or hard-linked with
``--link``) atomically; existing clip folders are refused unless ``--overwrite``; inputs are never
modified, and the output folder may not be (inside) the input folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from basicvsr_archival.datasets.io import list_frames, place_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description="Cut a long frame sequence into REDS-layout clip folders.")
    parser.add_argument("frames_dir", help="folder holding the frames of one video")
    parser.add_argument("out_dir", help="output root; clips go to OUT/000, OUT/001, ...")
    parser.add_argument("--clip-length", type=int, default=100, help="frames per clip (REDS: 100)")
    parser.add_argument("--min-length", type=int, default=None, help="drop a last clip shorter than this")
    parser.add_argument(
        "--first-clip", type=int, default=0, help="number of the first clip folder (default 0)"
    )
    parser.add_argument("--link", action="store_true", help="hard-link instead of copying (same file system)")
    parser.add_argument("--overwrite", action="store_true", help="allow writing into existing clip folders")
    return parser.parse_args(argv)


def cut_clips(
    frames_dir: str | Path,
    out_dir: str | Path,
    clip_length: int = 100,
    min_length: int | None = None,
    first_clip: int = 0,
    link: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Write the clips and return their folders (see the module docstring)."""
    src, out = Path(frames_dir).resolve(), Path(out_dir).resolve()
    if out == src or src in out.parents:
        raise ValueError(f"{out}: output folder must not be (inside) the input folder {src}")
    if clip_length < 1:
        raise ValueError(f"--clip-length must be >= 1, got {clip_length}")
    frames = list_frames(src, "input frame")
    min_length = clip_length if min_length is None else min_length
    starts = [s for s in range(0, len(frames), clip_length) if len(frames[s : s + clip_length]) >= min_length]
    if not starts:
        raise ValueError(f"{src}: {len(frames)} frames give no clip of at least {min_length} frames")
    clips = [out / f"{first_clip + i:03d}" for i in range(len(starts))]
    existing = [c for c in clips if c.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]}: clip folder exists (pass --overwrite to replace its frames)")
    with tqdm(
        total=sum(len(frames[s : s + clip_length]) for s in starts), desc="cut clips", unit="frame"
    ) as bar:
        for clip, start in zip(clips, starts):
            clip.mkdir(parents=True, exist_ok=True)
            for i, frame in enumerate(frames[start : start + clip_length]):
                place_file(frame, clip / f"{i:08d}{frame.suffix.lower()}", link)
                bar.update(1)
    return clips


def main(argv: list[str] | None = None) -> None:
    """Run the cutting from the command line."""
    args = parse_args(argv)
    clips = cut_clips(
        args.frames_dir,
        args.out_dir,
        args.clip_length,
        args.min_length,
        args.first_clip,
        args.link,
        args.overwrite,
    )
    print(f"wrote {len(clips)} clips to {args.out_dir}")


if __name__ == "__main__":
    main()
