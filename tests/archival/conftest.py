"""Fixtures shared by the archival tests."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Every archival test module runs single-threaded (``one_torch_thread`` in tests/conftest.py)."""
    yield


@pytest.fixture(scope="session")
def ray_in_process():
    """Ray started once per session in this process on 2 CPUs, as the 'ray' engine starts it."""
    ray = pytest.importorskip("ray")
    from basicvsr_archival.archival.engines import start_ray

    started = start_ray(None, num_cpus=2)
    yield ray
    if started:
        ray.shutdown()
