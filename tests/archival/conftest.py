"""Fixtures shared by the archival tests."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Every archival test module runs single-threaded (``one_torch_thread`` in tests/conftest.py)."""
    yield
