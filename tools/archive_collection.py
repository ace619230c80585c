#!/usr/bin/env python
"""Archive a collection of videos into a store: content clusters that share one fine-tuned SR model.

Thin script for the ``basicvsr-archive-collection`` command;
the code is in ``basicvsr_archival/tools/archive_collection.py``.
"""

import sys

from basicvsr_archival.tools.archive_collection import main
from basicvsr_archival.utils.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
