"""The package's one error hierarchy: every user-facing failure is a :class:`BasicVSRError`.

A ``BasicVSRError``'s message is one line naming the file (or setting) and the problem; the tools
print it as ``error: <message>`` and exit with 1 (:func:`basicvsr_archival.utils.cli.run_cli`).
The classes keep the builtin bases callers caught before (``ValueError``, ``OSError``, ...), and the
modules that raised them re-export them (``utils.ffmpeg.MediaError``, ``apis.InferenceError``, ...)::

    BasicVSRError
    ├── ConfigError (ValueError)              a config cannot be used for the job asked of it
    ├── MediaError                            media helpers (utils/ffmpeg.py, utils/output.py)
    │   ├── VideoInputError (ValueError)
    │   ├── FFmpegError (RuntimeError)
    │   ├── FrameWriteError (OSError)
    │   └── OutputPathError (ValueError)
    │       ├── OutputExistsError
    │       └── OutputIsInputError
    ├── InferenceError                        the inference API, the demo, ONNX export
    │   ├── CheckpointError
    │   │   ├── CheckpointReadError (ValueError)  missing / unreadable checkpoint file
    │   │   └── CheckpointMismatchError        names or shapes do not fit the model
    │   └── FrameSourceError (ValueError)
    └── ArchiveError                          archives (archival/*)
        ├── ArchiveFormatError, ArchiveCorruptError, ArchiveExistsError, BaseCheckpointError
        └── RestoreError, FinetuneError, EvaluationError, StudyError, ... (in their modules)
"""

from __future__ import annotations

from collections.abc import Sequence

_TERSE = (KeyError, IndexError, EOFError)  # exceptions whose message alone says little ('foo', 3)


class BasicVSRError(Exception):
    """A user-facing failure; its message is one line naming the file and the problem."""


class ConfigError(BasicVSRError, ValueError):
    """A config cannot be used for the job asked of it; the message names the file and the problem."""


# ------------------------------------------------------------------------------------------ media
class MediaError(BasicVSRError):
    """Base class of every error raised by the media helpers."""


class VideoInputError(MediaError, ValueError):
    """An input file is missing, unreadable or not a video."""


class FFmpegError(MediaError, RuntimeError):
    """An ffmpeg process failed; ``cmd`` and ``stderr`` hold the details."""

    def __init__(self, message: str, cmd: Sequence[str] = (), stderr: str = "") -> None:
        super().__init__(message)
        self.cmd = list(cmd)
        self.stderr = stderr


class FrameWriteError(MediaError, OSError):
    """An output frame could not be written (``errno`` kept: ENOSPC for a full disk)."""


class OutputPathError(MediaError, ValueError):
    """An output path is unusable; the message is one line naming it and the problem."""


class OutputExistsError(OutputPathError):
    """The output (or a frame in an output folder) exists and overwriting was not asked for."""


class OutputIsInputError(OutputPathError):
    """The output is, is inside or holds one of the inputs."""


# -------------------------------------------------------------------------------------- inference
class InferenceError(BasicVSRError):
    """A user-facing inference failure; its message is one line naming the file and the problem."""


class CheckpointError(InferenceError):
    """A checkpoint file is missing, unreadable or does not fit the model."""


class CheckpointReadError(CheckpointError, ValueError):
    """A checkpoint file is missing or is not a readable PyTorch checkpoint."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's parameter names or shapes do not fit the model built from the config."""


class FrameSourceError(InferenceError, ValueError):
    """An input folder / video is missing, empty or unreadable."""


# --------------------------------------------------------------------------------------- archives
class ArchiveError(BasicVSRError):
    """Base class of archive errors; the message is one line naming the file and the problem."""


class ArchiveFormatError(ArchiveError):
    """Not an archive of this format, or a format version this code cannot read."""


class ArchiveCorruptError(ArchiveError):
    """A member is missing, truncated or does not match its recorded SHA-256."""


class ArchiveExistsError(ArchiveError):
    """The output archive already exists (archives are never overwritten)."""


class BaseCheckpointError(ArchiveError):
    """The base checkpoint of a delta model is missing, unreadable or has another SHA-256."""


def first_line(exc: BaseException, with_type: bool = False) -> str:
    """The first non-empty line of ``exc``'s message, for one-line errors.

    Prefixed with the exception's type name when ``with_type``, when the message is empty (the type
    name alone then) and for terse messages (``KeyError``'s ``'name'``, ``IndexError``, ``EOFError``).
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if with_type or isinstance(exc, _TERSE):
        return f"{type(exc).__name__}: {lines[0]}"
    return lines[0]


def notes(exc: BaseException) -> str:
    """The exception's notes (``add_note``) as ``"; note"`` suffixes of its one-line message."""
    return "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
