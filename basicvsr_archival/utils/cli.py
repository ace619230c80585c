"""Shared command-line plumbing: one-line errors and exit codes for the tools and the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


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


def guarded_main(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``run(args)``; turn failures into one ``error: ...`` line on stderr and exit code 1.

    Exit codes: ``run``'s own (0 ok), 1 for an error, 130 for Ctrl-C (argparse already exits with 2
    on bad arguments). A user-facing ``InferenceError`` prints its message; anything else also names
    its type and points at ``--debug``, which re-raises for the traceback.
    """
    from basicvsr_archival.apis import InferenceError

    try:
        return run(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if getattr(args, "debug", False):
            raise
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        text = lines[0] if lines else ""
        if not isinstance(err, InferenceError):  # unexpected: name the kind of failure
            text = f"{type(err).__name__}: {text} (rerun with --debug for the traceback)"
        print(f"error: {text}", file=sys.stderr)
        return 1
