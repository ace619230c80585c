"""Verify an archive: format version, members present, sizes and SHA-256 hashes (and the base checkpoint).

Examples::

    python tools/verify_archive.py clip.archive
    python tools/verify_archive.py clip.tar --check-base --base-checkpoint chkpts/
    python tools/verify_archive.py collection.store

A store (a directory with ``catalog.sqlite``) is checked whole: every object's SHA-256, every
reference resolves, no orphan objects, the catalog consistent (it takes the store's lock).
"""

from __future__ import annotations

import argparse
import sys

from basicvsr_archival.archival.container import verify_archive
from basicvsr_archival.archival.model_storage import find_base_checkpoint
from basicvsr_archival.archival.store import is_store, verify
from basicvsr_archival.utils.cli import add_debug_argument, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description="Check an archive's or a store's integrity; exit 1 with one line if it fails.",
        epilog="examples: python tools/verify_archive.py clip.tar; "
        "python tools/verify_archive.py collection.store",
    )
    parser.add_argument("archive", help="archive directory or .tar, or a store directory")
    parser.add_argument(
        "--check-base", action="store_true", help="also find the base checkpoint and check its hash"
    )
    parser.add_argument(
        "--base-checkpoint", action="append", default=[], help="base checkpoint file or folder"
    )
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Verify and print one summary line."""
    args = parse_args(argv)
    if is_store(args.archive):
        print(verify(args.archive).raise_for_problems().summary())
        return 0
    report = verify_archive(args.archive)
    print(report.summary())
    base = (report.manifest.get("model") or {}).get("base_checkpoint")
    if args.check_base and base:
        print(f"base checkpoint: {find_base_checkpoint(base, args.base_checkpoint)} (sha256 matches)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
