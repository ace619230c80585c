"""The console scripts (``setup.py``'s ``entry_points``): one function a tool of ``basicvsr_archival.tools``.

:data:`COMMANDS` maps each command to its tool module. A command runs the tool's ``main`` under
:func:`basicvsr_archival.utils.cli.run_cli` (one ``error:`` line and exit code 1; ``--debug`` for the
traceback), importing the tool only when it runs. Standard library only at import: ``setup.py``
loads this file by path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

COMMANDS: dict[str, str] = {
    "basicvsr-archive": "archive",
    "basicvsr-restore": "restore",
    "basicvsr-verify": "verify_archive",
    "basicvsr-evaluate": "evaluate_archive",
    "basicvsr-study": "archival_study",
    "basicvsr-train": "train",
    "basicvsr-test": "test",
    "basicvsr-demo": "demo",
    "basicvsr-make-sample": "make_sample_video",
    "basicvsr-onnx": "pytorch2onnx",
    "basicvsr-archive-collection": "archive_collection",
    "basicvsr-catalog": "catalog",
    "basicvsr-plan-storage": "plan_storage",
}


def _command(module: str) -> Callable[[], int]:
    """The console-script function of ``basicvsr_archival.tools.<module>``."""

    def run() -> int:
        from basicvsr_archival.utils.cli import run_cli

        return run_cli(importlib.import_module(f"basicvsr_archival.tools.{module}").main)

    run.__name__ = module
    run.__doc__ = f"Run ``basicvsr_archival.tools.{module}.main`` on the command line's arguments."
    return run


archive = _command("archive")
restore = _command("restore")
verify_archive = _command("verify_archive")
evaluate_archive = _command("evaluate_archive")
archival_study = _command("archival_study")
train = _command("train")
test = _command("test")
demo = _command("demo")
make_sample_video = _command("make_sample_video")
pytorch2onnx = _command("pytorch2onnx")
archive_collection = _command("archive_collection")
catalog = _command("catalog")


def console_scripts() -> list[str]:
    """``setup.py``'s ``console_scripts`` entries: ``basicvsr-archive = ...commands:archive``."""
    return [f"{name} = basicvsr_archival.tools.commands:{module}" for name, module in COMMANDS.items()]
