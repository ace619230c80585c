"""Execution engines: local in-process and real Ray (in-process, 2 CPUs) give the same results."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

from basicvsr_archival.archival.engines import EngineError, RayEngine, make_engine, one_line


def _work(seed: int) -> tuple[float, int]:
    """A seeded torch computation and the torch thread count it ran with."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(64, 64, generator=g)
    return float((x @ x).sum()), torch.get_num_threads()


def _fails(arg: str) -> None:
    """Always raises."""
    raise ValueError(f"bad input {arg}\nsecond line")


def _dies_first(marker: str) -> int:
    """Kills its own worker process on the first attempt (decided by ``marker``), returns 42 after."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died once")
        os._exit(1)
    return 42


def _flaky(marker: str) -> int:
    """Raises on the first attempt, returns 7 after."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("transient")
    return 7


ITEMS = {f"v{i}": i for i in range(6)}


def test_local_engine_runs_in_process_and_retries(tmp_path):
    torch.set_num_threads(2)
    with make_engine("local", max_retries=2) as engine:
        results = list(engine.map(_work, ITEMS, desc="local", progress=False))
        flaky = list(engine.map(_flaky, [("f", str(tmp_path / "flaky"))], progress=False))
        failed = list(engine.map(_fails, {"x": "a.mp4"}, progress=False))
    assert torch.get_num_threads() == 2  # pinned for the tasks only
    assert [r.key for r in results] == list(ITEMS) and all(r.ok and r.attempts == 1 for r in results)
    assert {r.worker_pid for r in results} == {os.getpid()}
    assert [r.value for r in results] == [(_work(i)[0], 1) for i in ITEMS.values()]
    assert (flaky[0].value, flaky[0].attempts, flaky[0].error, flaky[0].item_key) == (7, 2, None, "f")
    (f,) = failed
    assert (f.value, f.attempts, f.error) == (None, 3, "ValueError: bad input a.mp4")


def test_engine_options_are_checked():
    with pytest.raises(EngineError, match=r"^engine must be one of \('local', 'ray'\), got 'spark'$"):
        make_engine("spark")
    with pytest.raises(EngineError, match="needs engine 'ray'"):
        make_engine("local", ray_address="10.0.0.1:6379")
    with pytest.raises(EngineError, match="max_retries must be an int >= 0, got -1"):
        make_engine("ray", max_retries=-1)
    engine = make_engine("local")
    with pytest.raises(EngineError, match="kind must be one of"):
        list(engine.map(_work, ITEMS, kind="tpu"))
    with pytest.raises(EngineError, match="key 'a' appears twice"):
        list(engine.map(_work, [("a", 1), ("a", 2)]))
    assert one_line(ValueError("x\ny")) == "ValueError: x" and one_line(KeyError()) == "KeyError"


def _ray_engine(ray) -> RayEngine:
    """The Ray engine; this test module (not importable in workers) is sent to them by value."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    engine = make_engine("ray", max_retries=2)
    assert isinstance(engine, RayEngine)
    return engine


def test_ray_matches_local_in_worker_processes(ray_in_process):
    engine = _ray_engine(ray_in_process)
    results = list(engine.map(_work, ITEMS, desc="ray", progress=False))
    local = {r.key: r.value for r in make_engine("local").map(_work, ITEMS, progress=False)}
    assert {r.key: r.value for r in results} == local  # same values, one torch thread in every worker
    pids = {r.worker_pid for r in results}
    assert os.getpid() not in pids and all(p > 0 for p in pids)
    assert all(r.attempts == 1 and r.seconds >= 0 for r in results)
    assert "num_gpus" not in engine._options("gpu")  # no GPU in this Ray cluster: CPU tasks
    assert ray_in_process.cluster_resources()["CPU"] == 2


def test_ray_retries_a_killed_worker_and_reports_failures(ray_in_process, tmp_path):
    engine = _ray_engine(ray_in_process)
    killed = list(engine.map(_dies_first, {"k": str(tmp_path / "killed")}, progress=False))
    (k,) = killed
    assert (k.value, k.attempts, k.error) == (42, 2, None) and k.worker_pid != os.getpid()
    failed = {r.key: r for r in engine.map(_fails, {"x": "a.mp4", "y": "b.mp4"}, progress=False)}
    assert failed["x"].error == "ValueError: bad input a.mp4" and failed["x"].value is None
    assert failed["y"].error == "ValueError: bad input b.mp4"
    assert [failed[k].attempts for k in "xy"] == [3, 3]  # 1 + max_retries
    assert all(0 < failed[k].worker_pid != os.getpid() for k in "xy")
