#!/usr/bin/env python
"""Evaluate an archive against the original video: PSNR, SSIM, VMAF of the restoration and of baselines.

Thin script for the ``basicvsr-evaluate`` command;
the code is in ``basicvsr_archival/tools/evaluate_archive.py``.
"""

import sys

from basicvsr_archival.tools.evaluate_archive import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
