#!/usr/bin/env python
"""Archive a video: downscale + encode it, fine-tune the SR model on it, and package both.

Thin script for the ``basicvsr-archive`` command;
the code is in ``basicvsr_archival/tools/archive.py``.
"""

import sys

from basicvsr_archival.tools.archive import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
