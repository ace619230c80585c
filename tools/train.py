#!/usr/bin/env python
"""Train a model from a config file with mmengine's Runner (single process or torchrun).

Thin script for the ``basicvsr-train`` command;
the code is in ``basicvsr_archival/tools/train.py``.
"""

import sys

from basicvsr_archival.tools.train import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
