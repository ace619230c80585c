"""Extract the frames of a video into numbered RGB PNGs (``00000000.png`` ...) with PyAV.

Example::

    python tools/data/extract_frames.py lecture01.mp4 data/lectures/lecture01/GT
    python tools/data/extract_frames.py clip.mkv out/ --start 100 --max-frames 300

Frames are decoded exactly (no seeking) and written atomically; an output folder that already holds
images is refused unless ``--overwrite``; the input video is never written to.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from basicvsr_archival.datasets.io import IMG_EXTENSIONS, write_image
from basicvsr_archival.utils.ffmpeg import iter_video_frames, probe_video


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description="Extract video frames to numbered PNG files.")
    parser.add_argument("video", help="input video file")
    parser.add_argument("out_dir", help="output folder for 00000000.png, 00000001.png, ...")
    parser.add_argument("--start", type=int, default=0, help="first frame index to extract (default 0)")
    parser.add_argument("--max-frames", type=int, default=None, help="extract at most this many frames")
    parser.add_argument(
        "--overwrite", action="store_true", help="allow writing into a folder that holds images"
    )
    return parser.parse_args(argv)


def extract_frames(
    video: str | Path,
    out_dir: str | Path,
    start: int = 0,
    max_frames: int | None = None,
    overwrite: bool = False,
) -> int:
    """Write frames ``start ...`` of ``video`` to ``out_dir`` as ``%08d.png`` from 0; returns the count."""
    video, out = Path(video), Path(out_dir)
    info = probe_video(video)  # raises a clear error for a missing / unreadable file
    if out.is_dir() and not overwrite and any(p.suffix.lower() in IMG_EXTENSIONS for p in out.iterdir()):
        raise FileExistsError(f"{out}: already holds images (pass --overwrite to replace them)")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
    total = max(info.num_frames - start, 0)
    if max_frames is not None:
        total = min(total, max_frames)
    count = 0
    with tqdm(total=total or None, desc=f"extract {video.name}", unit="frame") as bar:
        for frame in iter_video_frames(video, start=start):
            if max_frames is not None and count >= max_frames:
                break
            write_image(out / f"{count:08d}.png", frame)
            count += 1
            bar.update(1)
    if count == 0:
        raise ValueError(f"{video}: no frames at or after index {start} ({info.num_frames} frames)")
    return count


def main(argv: list[str] | None = None) -> None:
    """Run the extraction from the command line."""
    args = parse_args(argv)
    n = extract_frames(args.video, args.out_dir, args.start, args.max_frames, args.overwrite)
    print(f"wrote {n} frames to {args.out_dir}")


if __name__ == "__main__":
    main()
