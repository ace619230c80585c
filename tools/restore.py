#!/usr/bin/env python
"""Restore an archive: verify it, rebuild its SR model and super-resolve the LR stream.

Thin script for the ``basicvsr-restore`` command;
the code is in ``basicvsr_archival/tools/restore.py``.
"""

import sys

from basicvsr_archival.tools.restore import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
