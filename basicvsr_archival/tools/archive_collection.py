"""Archive a collection of videos into a store: content clusters that share one fine-tuned SR model.

Examples::

    python tools/archive_collection.py configs/archival/collection_tiny_ci.py a.mp4 b.mp4 c.mkv -o store/
    python tools/archive_collection.py CONFIG --list videos.csv -o store/ --engine ray
    python tools/archive_collection.py CONFIG --list videos.csv -o store/ --engine ray --ray-address auto
    python tools/archive_collection.py CONFIG new.mp4 -o store/ --resume   # continue, or add videos

``videos.csv`` has a header with a ``path`` column (relative paths are relative to the CSV) and,
for ``cluster.method="label"``, a ``label`` column. With ``--engine ray`` and no address Ray is
started in this process; on a Ray cluster, STORE must be a path every node sees (shared storage).
A missing or unreadable video is named, the rest is archived, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from mmengine.config import DictAction

from basicvsr_archival.archival.collection import CollectionError, archive_collection
from basicvsr_archival.utils.cli import add_debug_argument, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="collection config, e.g. configs/archival/collection_tiny_ci.py")
    parser.add_argument("videos", nargs="*", help="source videos")
    parser.add_argument("-o", "--output", required=True, help="the store (a folder; created if missing)")
    parser.add_argument("--list", help="CSV with a 'path' column (and 'label' for cluster.method=label)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="where tasks run")
    parser.add_argument("--ray-address", help="address of a running Ray cluster (default: start Ray here)")
    parser.add_argument("--resume", action="store_true", help="continue a run, or add videos to a store")
    parser.add_argument(
        "--cfg-options", nargs="+", action=DictAction, default={},
        help="override config entries, e.g. cluster.k=3 cluster.iters_per_video=50",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not args.videos and not args.list:
        parser.error("give videos, or --list videos.csv")
    if args.ray_address and args.engine != "ray":
        parser.error("--ray-address needs --engine ray")
    return args


def read_video_list(path: Path) -> tuple[list[str], dict[str, str]]:
    """Paths (relative to the CSV's folder) and labels from a video list; bad files raise one line."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CollectionError(f"{path}: cannot read the video list ({exc})") from None
    if not rows or "path" not in rows[0]:
        raise CollectionError(f"{path}: the video list needs a header with a 'path' column")
    videos, labels = [], {}
    for row in rows:
        p = Path(row["path"])
        video = str(p if p.is_absolute() else path.parent / p)
        videos.append(video)
        if row.get("label"):
            labels[video] = row["label"]
    return videos, labels


def main(argv: list[str] | None = None) -> int:
    """Archive the collection and print a summary; 1 if any video could not be archived."""
    args = parse_args(argv)
    videos, labels = list(args.videos), {}
    if args.list:
        listed, labels = read_video_list(Path(args.list))
        videos += listed
    result = archive_collection(
        args.config,
        videos,
        args.output,
        labels=labels,
        engine=args.engine,
        ray_address=args.ray_address,
        resume=args.resume,
        cfg_options=args.cfg_options,
        progress=not args.no_progress,
    )
    archived = sum(state == "done" for state in result.videos.values())
    print(
        f"store:   {result.store} ({archived} of {len(videos)} videos archived; {len(result.ran)} tasks run)"
    )
    for name, reason in result.failed.items():
        print(f"failed:  {name}: {reason}", file=sys.stderr)
    if result.failed:
        print(f"error: {len(result.failed)} video(s) not archived; fix them and rerun with --resume",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
