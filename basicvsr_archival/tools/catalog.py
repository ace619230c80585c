"""Show a store's catalog: videos, clusters, bytes per member, states (or all of it as JSON).

Examples::

    python tools/catalog.py collection.store
    python tools/catalog.py collection.store --json > catalog.json
    python tools/catalog.py collection.store --ladder-plot ladder.png

Reads without taking the store's lock, so it works while a run is writing the store.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from basicvsr_archival.archival.store import catalog_json, open_store_or_error
from basicvsr_archival.archival.store_report import catalog_lines
from basicvsr_archival.utils.cli import add_debug_argument, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description="Show a store's catalog (videos, clusters, bytes, states).",
        epilog="example: python tools/catalog.py collection.store --json",
    )
    parser.add_argument("store", help="store directory (holds catalog.sqlite and objects/)")
    parser.add_argument("--json", action="store_true", help="print the whole catalog as JSON")
    parser.add_argument(
        "--ladder-plot",
        metavar="PNG",
        help="write quality vs restore cost of each cluster's model-size ladder",
    )
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the catalog."""
    args = parse_args(argv)
    with open_store_or_error(args.store, lock=False) as store:
        data = catalog_json(store)
    if args.json:
        print(json.dumps(data, indent=1, sort_keys=True))
    else:
        print("\n".join(catalog_lines(data, args.store)))
    if args.ladder_plot:
        from basicvsr_archival.archival.size_ladder import plot_ladder

        written = plot_ladder(data["clusters"], Path(args.ladder_plot))
        print(f"wrote {written}" if written else "no cluster has a size ladder: no plot", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
