#!/usr/bin/env python
"""Export a whole BasicVSR++ video model to ONNX and check it with onnxruntime.

Thin script for the ``basicvsr-onnx`` command;
the code is in ``basicvsr_archival/tools/pytorch2onnx.py``.
"""

import sys

from basicvsr_archival.tools.pytorch2onnx import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
