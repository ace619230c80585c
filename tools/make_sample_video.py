#!/usr/bin/env python
"""Write a short synthetic sample video, losslessly, with the project's ffmpeg: an 'original' to archive.

Thin script for the ``basicvsr-make-sample`` command;
the code is in ``basicvsr_archival/tools/make_sample_video.py``.
"""

import sys

from basicvsr_archival.tools.make_sample_video import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
