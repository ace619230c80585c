#!/usr/bin/env python
"""Verify an archive: format version, members present, sizes and SHA-256 hashes (and the base checkpoint).

Thin script for the ``basicvsr-verify`` command;
the code is in ``basicvsr_archival/tools/verify_archive.py``.
"""

import sys

from basicvsr_archival.tools.verify_archive import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
