#!/usr/bin/env python
"""Plan where each video goes (original or LR + SR, which tier) under real storage prices.

Thin script for the ``basicvsr-plan-storage`` command;
the code is in ``basicvsr_archival/tools/plan_storage.py``.
"""

import sys

from basicvsr_archival.tools.plan_storage import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
