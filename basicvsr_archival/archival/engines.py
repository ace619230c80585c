"""Execution engines: run one function over many items in this process (``local``) or as Ray tasks.

``make_engine("local" | "ray", ...)`` gives an engine whose ``map(fn, items, kind, desc)`` yields a
:class:`TaskResult` per item as it finishes (local: in order; Ray: in completion order) and shows a
progress bar in the driver. Workers only compute and return values: whatever records results (the
catalog) stays in the driver.

* local: in-process, one item at a time; a raising item is retried up to ``max_retries`` times.
* ray: ``ray.init`` in-process (``num_cpus`` CPUs) unless ``ray_address`` names a running cluster;
  every item is a remote task with ``max_retries`` (worker deaths and exceptions are retried) and
  asks for a GPU (``num_gpus=1``) when ``kind='gpu'`` and the cluster has GPUs. Ray re-executes
  the function on a retry, so each attempt is counted by the task itself in a marker file under a
  scratch dir the driver makes (on a multi-node cluster pass a ``scratch_dir`` every node sees); while
  a task runs, its marker (:func:`marker_name`) names its attempt and the pid of the worker running it.

Both engines run ``fn`` on ``threads`` torch intra-op threads (results do not depend on the engine or
the machine's core count). A task that still fails after its retries gives a result with ``error``
(one line) instead of stopping the map.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .package import ArchiveError

ENGINES = ("local", "ray")
KINDS = ("cpu", "gpu")
RAY_OBJECT_STORE_BYTES = 256 * 2**20  # in-process Ray: workers return small results (paths, dicts)


class EngineError(ArchiveError):
    """An engine that cannot be made or used (bad name or option, Ray missing or unreachable)."""


@dataclass(frozen=True)
class TaskResult:
    """Outcome of one item: its value (None on error), the worker's pid, attempts, seconds, error line."""

    key: str
    value: Any
    worker_pid: int
    attempts: int
    seconds: float
    error: str | None = None

    @property
    def item_key(self) -> str:
        """The item's key (the name issue 14's plan uses)."""
        return self.key

    @property
    def ok(self) -> bool:
        """True when the task returned a value."""
        return self.error is None


def one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line (a Ray task error gives its cause)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and cause is not exc:
        exc = cause
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _keyed(items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``(key, argument)`` pairs of a mapping or an iterable of pairs; keys must be unique strings."""
    pairs = list(items.items()) if isinstance(items, Mapping) else [tuple(p) for p in items]
    seen: set[str] = set()
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str):
            raise EngineError(f"engine items must be (str key, argument) pairs, got {pair!r:.80}")
        if pair[0] in seen:
            raise EngineError(f"engine items: key {pair[0]!r} appears twice")
        seen.add(pair[0])
    return pairs  # type: ignore[return-value]


def _check_kind(kind: str) -> None:
    """Raise :class:`EngineError` unless ``kind`` is 'cpu' or 'gpu'."""
    if kind not in KINDS:
        raise EngineError(f"engine task kind must be one of {KINDS}, got {kind!r}")


# ------------------------------------------------------------------------------------------ task side
def _count_attempt(marker: Path) -> int:
    """Add this attempt (and this process's pid) to ``marker``; returns the attempt number."""
    attempts, _ = read_marker(marker)
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}-{secrets.token_hex(3)}")
    tmp.write_text(f"{attempts + 1} {os.getpid()}\n")
    os.replace(tmp, marker)
    return attempts + 1


def marker_name(key: str) -> str:
    """File name of the attempt marker of the task of item ``key`` (``attempts pid`` of its last attempt)."""
    return f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.attempts"


def read_marker(marker: Path) -> tuple[int, int]:
    """(attempts so far, pid of the last attempt) of a task's marker file; (0, 0) before the first."""
    try:
        attempts, pid = marker.read_text().split()
        return int(attempts), int(pid)
    except (OSError, ValueError):
        return 0, 0


def run_task(
    fn: Callable[[Any], Any], arg: Any, marker: str | None, threads: int | None
) -> tuple[Any, int, int, float]:
    """One attempt of ``fn(arg)`` on ``threads`` torch threads: (value, pid, attempt number, seconds)."""
    from basicvsr_archival.utils.threads import pinned_threads

    attempt = _count_attempt(Path(marker)) if marker is not None else 1
    t0 = time.perf_counter()
    with pinned_threads(threads):
        value = fn(arg)
    return value, os.getpid(), attempt, time.perf_counter() - t0


# ------------------------------------------------------------------------------------------ engines
class Engine:
    """Common part of the engines: options, the progress bar, context-manager use."""

    name = "engine"

    def __init__(self, max_retries: int = 2, threads: int | None = 1) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise EngineError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise EngineError(f"engine threads must be an int >= 1 or None, got {threads!r}")
        self.max_retries, self.threads = max_retries, threads

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        kind: str = "cpu",
        desc: str | None = None,
        progress: bool = True,
    ) -> Iterator[TaskResult]:
        """Run ``fn(argument)`` for every ``(key, argument)``; yield a :class:`TaskResult` as each ends."""
        _check_kind(kind)
        pairs = _keyed(items)
        with tqdm(total=len(pairs), desc=desc or self.name, unit="task", disable=not progress) as bar:
            for result in self._run(fn, pairs, kind):
                bar.update(1)
                if not result.ok and progress:
                    bar.write(f"{desc or self.name}: {result.key}: failed: {result.error}")
                yield result

    def _run(self, fn: Callable[[Any], Any], pairs: list[tuple[str, Any]], kind: str) -> Iterator[TaskResult]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the engine started."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LocalEngine(Engine):
    """Items run one after another in this process; a raising item is retried ``max_retries`` times."""

    name = "local"

    def _run(self, fn: Callable[[Any], Any], pairs: list[tuple[str, Any]], kind: str) -> Iterator[TaskResult]:
        """Each item in turn, with retries."""
        for key, arg in pairs:
            t0 = time.perf_counter()
            for attempt in range(1, self.max_retries + 2):
                try:
                    value, pid, _, seconds = run_task(fn, arg, None, self.threads)
                except Exception as exc:  # any failure of the task is its result
                    if attempt > self.max_retries:
                        yield TaskResult(
                            key, None, os.getpid(), attempt, time.perf_counter() - t0, one_line(exc)
                        )
                    continue
                yield TaskResult(key, value, pid, attempt, seconds)
                break


def start_ray(address: str | None = None, num_cpus: int = 2) -> bool:
    """Connect to the Ray cluster at ``address``, or start one in-process; False if Ray was already up."""
    try:
        import ray
    except ImportError as exc:
        raise EngineError("engine 'ray' needs Ray: pip install -e '.[ray]'") from exc
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=RAY_OBJECT_STORE_BYTES,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EngineError(
            f"Ray at {address or 'in-process'}: cannot start or connect: {one_line(exc)}"
        ) from exc
    return True


class RayEngine(Engine):
    """Items as Ray remote tasks (retried by Ray); Ray started in-process unless an address is given."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        max_retries: int = 2,
        threads: int | None = 1,
        scratch_dir: str | os.PathLike | None = None,
        num_cpus: int = 2,
    ) -> None:
        super().__init__(max_retries, threads)
        self.address, self.num_cpus = address, num_cpus
        self.scratch_dir = Path(scratch_dir) if scratch_dir is not None else None
        self._started = False

    def _options(self, kind: str) -> dict[str, Any]:
        """Task options: retries (exceptions too), one CPU, a GPU for 'gpu' tasks if the cluster has one."""
        import ray

        self._started = start_ray(self.address, self.num_cpus) or self._started
        options: dict[str, Any] = dict(max_retries=self.max_retries, retry_exceptions=True, num_cpus=1)
        if kind == "gpu" and ray.cluster_resources().get("GPU", 0) > 0:
            options["num_gpus"] = 1
        return options

    def _run(self, fn: Callable[[Any], Any], pairs: list[tuple[str, Any]], kind: str) -> Iterator[TaskResult]:
        """Submit every item, then yield results in completion order; clean the scratch dir at the end."""
        import ray

        remote = ray.remote(run_task).options(**self._options(kind))
        if self.scratch_dir is not None:
            self.scratch_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="engine-attempts-", dir=self.scratch_dir))
        try:
            fn_ref = ray.put(fn)
            pending: dict[Any, tuple[str, Path, float]] = {}
            for key, arg in pairs:
                marker = scratch / marker_name(key)
                ref = remote.remote(fn_ref, arg, str(marker), self.threads)
                pending[ref] = (key, marker, time.perf_counter())
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                key, marker, t0 = pending.pop(done[0])
                try:
                    value, pid, attempts, seconds = ray.get(done[0])
                except Exception as exc:  # failed after its retries: the result
                    attempts, pid = read_marker(marker)
                    yield TaskResult(key, None, pid, attempts, time.perf_counter() - t0, one_line(exc))
                    continue
                yield TaskResult(key, value, pid, attempts, seconds)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        """Shut Ray down if this engine started it."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def make_engine(
    name: str = "local",
    ray_address: str | None = None,
    max_retries: int = 2,
    threads: int | None = 1,
    scratch_dir: str | os.PathLike | None = None,
    num_cpus: int = 2,
) -> Engine:
    """The engine ``name`` ('local' or 'ray'); options are checked here, Ray starts on first use."""
    if name not in ENGINES:
        raise EngineError(f"engine must be one of {ENGINES}, got {name!r}")
    if name == "local":
        if ray_address:
            raise EngineError(f"a Ray address ({ray_address}) needs engine 'ray', not 'local'")
        return LocalEngine(max_retries, threads)
    return RayEngine(ray_address, max_retries, threads, scratch_dir, num_cpus)
