#!/usr/bin/env python
"""Show a store's catalog: videos, clusters, bytes per member, states (or all of it as JSON).

Thin script for the ``basicvsr-catalog`` command;
the code is in ``basicvsr_archival/tools/catalog.py``.
"""

import sys

from basicvsr_archival.tools.catalog import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
