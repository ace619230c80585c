"""The work dir of an archive job: ``state.json`` (finished stages, written atomically) and the job locks.

A running job holds ``WORK/.lock`` and ``OUT.lock`` beside the archive (:func:`job_locks`): a second
job on either fails at once.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from basicvsr_archival.utils.atomic import atomic_write_json
from basicvsr_archival.utils.ffmpeg import PathLike
from basicvsr_archival.utils.lock import exclusive_lock

from .package import ArchiveError, to_jsonable

STATE_NAME = "state.json"
STATE_VERSION = 1
STAGES = ("probe", "encode_lr", "decode_lr", "finetune", "sr_aware", "audio", "package")
WORK_LOCK_NAME = ".lock"  # WORK/.lock, held while a job runs
LOCK_SUFFIX = ".lock"  # OUT.lock beside the archive, held while a job writes it


class WorkDirMismatchError(ArchiveError):
    """The work dir was made for another source, base or settings: it cannot be resumed."""


class JobState:
    """``WORK/state.json``: finished stages and their products, written atomically after each stage."""

    def __init__(self, work_dir: Path) -> None:
        self.path = work_dir / STATE_NAME
        self.data: dict[str, Any] = {}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ArchiveError(
                    f"{self.path}: unreadable job state ({exc}); use a new --work-dir"
                ) from None
        self.data.setdefault("version", STATE_VERSION)
        self.data.setdefault("stages", {})

    @property
    def exists(self) -> bool:
        """True if a previous run recorded anything."""
        return self.path.is_file()

    def stage(self, name: str) -> dict[str, Any] | None:
        """Record of a finished stage, or None."""
        return self.data["stages"].get(name)

    def finish(self, name: str, record: Mapping[str, Any]) -> None:
        """Record a finished stage and save."""
        self.data["stages"][name] = to_jsonable(record)
        self.save()

    def invalidate_after(self, name: str) -> None:
        """Forget the stages after ``name`` (their inputs are being rebuilt)."""
        for later in STAGES[STAGES.index(name) + 1 :]:
            self.data["stages"].pop(later, None)

    def save(self) -> None:
        """Write the state atomically."""
        atomic_write_json(self.path, to_jsonable(self.data))


def default_work_dir(output: PathLike) -> Path:
    """``OUTPUT.work`` beside the archive."""
    out = Path(output)
    return out.with_name(f"{out.name}.work")


def resume_hint(work: PathLike) -> str:
    """What to do with a work dir that holds an earlier (interrupted or failed) run."""
    return f"pass --resume to continue, or delete {work} to start over"


@contextlib.contextmanager
def job_locks(out: Path, work: Path) -> Iterator[None]:
    """Hold ``OUT.lock`` (beside the archive) and ``WORK/.lock`` for the job's life (see ``utils.lock``).

    A second job on the same archive or work dir fails at once naming the holder's pid; the locks
    die with the process. A work dir created here and left empty is removed again.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"{out}: cannot create its folder ({exc.strerror or exc})") from None
    created = not work.exists()
    with contextlib.ExitStack() as stack:
        stack.enter_context(exclusive_lock(out.with_name(f"{out.name}{LOCK_SUFFIX}"), out))
        work.mkdir(parents=True, exist_ok=True)
        if created:
            stack.callback(_remove_if_empty, work)
        stack.enter_context(exclusive_lock(work / WORK_LOCK_NAME, work))
        yield


def _remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it is empty."""
    with contextlib.suppress(OSError):
        folder.rmdir()
