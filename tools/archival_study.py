#!/usr/bin/env python
"""Does SR archival pay off? Run the rate-distortion / storage-cost study on videos and write a report.

Thin script for the ``basicvsr-study`` command;
the code is in ``basicvsr_archival/tools/archival_study.py``.
"""

import sys

from basicvsr_archival.tools.archival_study import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
