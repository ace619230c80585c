#!/usr/bin/env python
"""Restore a video or a folder of frames with a BasicVSR++ config and checkpoint (x4 super-resolution).

Thin script for the ``basicvsr-demo`` command;
the code is in ``basicvsr_archival/tools/demo.py``.
"""

import sys

from basicvsr_archival.tools.demo import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
