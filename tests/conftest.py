"""Shared fixtures: the read-only reference material in ``../shared`` beside the repo."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path of ``../shared``; tests that need real data are skipped without it."""
    if not (SHARED / "README.md").is_file():
        pytest.skip(f"reference material not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def reds_demo_dir(shared_dir: Path) -> Path:
    """The 21 real REDS low-resolution frames (320x180 PNG)."""
    return shared_dir / "data" / "reds_demo_000"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Root of this repository."""
    return REPO_ROOT
