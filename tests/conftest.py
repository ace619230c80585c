"""Shared fixtures: the read-only reference material in ``../shared`` beside the repo; the CI kernel check."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
_SKIPPED_KERNEL_TESTS: list[str] = []
# the tools' scripts no longer put the repo on sys.path (they import the installed package): the ones
# the tests run in a subprocess import this checkout, like the tests themselves
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


def pytest_configure(config):
    """Register the ``kernels`` marker: tests of the project's C kernels."""
    config.addinivalue_line(
        "markers", "kernels: tests of the C CPU kernels; under CI=true a skipped one fails the run"
    )


def pytest_runtest_logreport(report):
    """Remember the kernel tests that were skipped (a missing kernel must not pass CI silently)."""
    if report.skipped and "kernels" in report.keywords:
        _SKIPPED_KERNEL_TESTS.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """Under ``CI=true``, a skipped kernel test turns a passing run into a failed one."""
    if os.environ.get("CI", "").lower() == "true" and _SKIPPED_KERNEL_TESTS and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """List the skipped kernel tests (and say that CI fails on them)."""
    if _SKIPPED_KERNEL_TESTS:
        ci = os.environ.get("CI", "").lower() == "true"
        terminalreporter.section("skipped kernel tests" + (" (CI=true: the run fails)" if ci else ""))
        for nodeid in _SKIPPED_KERNEL_TESTS:
            terminalreporter.line(nodeid)


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
def reds_crop(reds_demo_dir: Path):
    """``reds_crop(num_frames, top, left, h, w)``: the first REDS demo frames (RGB uint8) cropped to h x w."""
    import cv2

    def crop(num_frames: int, top: int, left: int, h: int, w: int) -> list:
        files = sorted(reds_demo_dir.glob("*.png"))[:num_frames]
        rgb = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
        return [frame[top : top + h, left : left + w] for frame in rgb]

    return crop


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """Root of this repository."""
    return REPO_ROOT


def _lively_tiny_model(perturb_offsets: bool = True):
    """Tiny c8n1 with seeded weights whose alignment matters: ~1 px flows, 10x DCN and reconstruction input.

    Random SPyNet weights give ~45 px flows and barely visible offsets; scaling SPyNet's last convs
    down and the deformable convolutions / reconstruction input up (and perturbing the offset heads
    with ``perturb_offsets``) makes the output depend on the offsets well above 1e-3.
    """
    import torch

    from basicvsr_archival.apis import init_model

    torch.manual_seed(0)
    model = init_model(
        Path(__file__).resolve().parents[1] / "configs" / "tiny_basicvsrpp_c8n1.py", None, "cpu"
    )
    net = model.generator
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for level in net.spynet.basic_module:
            level.basic_module[-1].conv.weight.mul_(0.05)
        for align in net.deform_align.values():
            align.weight.mul_(10)
            if perturb_offsets:
                align.conv_offset[-1].weight.normal_(0, 0.05, generator=gen)
                align.conv_offset[-1].bias.normal_(0, 0.05, generator=gen)
        net.reconstruction.main[0].weight.mul_(10)
    return model


@pytest.fixture(scope="session")
def lively_tiny_model():
    """Factory of the 'lively' tiny model of the ONNX tests: ``lively_tiny_model(perturb_offsets=True)``."""
    return _lively_tiny_model


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on 2 shared cores run fastest, and steadiest, single-threaded (torch and onnxruntime)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 64 KiB tmpfs mounted on a temporary folder: a disk that fills up (skipped where mount is refused)."""
    import subprocess

    mnt = tmp_path / "full"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)
