"""Shared command-line plumbing: one-line errors, exit codes and ``--debug`` for the tools and the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from basicvsr_archival.errors import BasicVSRError, first_line, notes
from basicvsr_archival.utils import env


def parse_int(text: str) -> int:
    """``int(text)`` for an argparse type, with argparse's one-line error for anything else."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum`` (``must be >= 1, got 0`` otherwise)."""

    def parse(text: str) -> int:
        value = parse_int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def add_debug_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--debug`` (show the traceback instead of one ``error:`` line) to a tool's parser."""
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def add_runner_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--trust-checkpoint`` and ``--launcher``: the options tools/train.py and tools/test.py share."""
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="load full-pickle checkpoints (torch.load weights_only=False), e.g. mmengine checkpoints "
        "written without SafeCheckpointHook; only for files you trust",
    )
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none", help="job launcher")
    return parser


def run_cli(main: Callable[[list[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a tool's ``main(argv)``; turn a failure into one ``error: ...`` line on stderr and exit code 1.

    Exit codes: ``main``'s own (0 ok), 1 for an error, 130 for Ctrl-C (argparse already exits with 2
    on bad arguments). A :class:`~basicvsr_archival.errors.BasicVSRError` or ``OSError`` prints its
    first line (and its notes); anything else is ``unexpected <type>: ...`` and points at ``--debug``.
    ``--debug`` among the arguments (or ``BASICVSR_DEBUG=1``, its documented alias in ``utils/env``)
    re-raises for the traceback.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args or bool(env.read("BASICVSR_DEBUG"))
    try:
        code = main(args)
        return code if isinstance(code, int) else 0  # tools/test.py returns its metrics
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        text = f"{first_line(exc)}{notes(exc)}"
        if not isinstance(exc, BasicVSRError | OSError):  # unexpected: name the kind of failure
            text = f"unexpected {type(exc).__name__}: {text} (rerun with --debug for the traceback)"
        print(f"error: {text}", file=sys.stderr)
        return 1
