#!/usr/bin/env python
"""Evaluate a checkpoint on a config's test set and print PSNR / SSIM per clip and their mean.

Thin script for the ``basicvsr-test`` command;
the code is in ``basicvsr_archival/tools/test.py``.
"""

import sys

from basicvsr_archival.tools.test import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
