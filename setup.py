"""Install basicvsr-archival: ``pip install torch==2.13.0 && pip install -e ".[tests]"``."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"


def read_version() -> str:
    """Return ``__version__`` from the package's ``__init__.py`` without importing it."""
    text = (HERE / "basicvsr_archival" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("basicvsr_archival/__init__.py has no __version__")
    return match.group(1)


# torch is a range that the CPU wheel torch==2.13.0 satisfies: install that first (README) so that
# pip does not fetch the multi-GB CUDA wheels for a bare ``torch``.
# opencv-python, not -headless: mmengine depends on opencv-python and two packages that both
# install ``cv2`` break each other.
INSTALL_REQUIRES = [
    "torch>=2.1",
    "mmengine>=0.10.0",
    "numpy",
    "opencv-python",
    "av",
    "imageio-ffmpeg",
    "tqdm",
    "matplotlib",
    "scipy",
]

# ONNX export (tools/pytorch2onnx.py): onnxscript is what torch.onnx.export(dynamo=True) needs, onnx
# writes the file, onnxruntime checks it. None of them pulls torch or another cv2 package (tested with
# onnx 1.23.2, onnxscript 0.7.2, onnxruntime 1.32.0: about 125 MB installed with their dependencies).
ONNX_REQUIRES = ["onnx", "onnxscript", "onnxruntime"]

EXTRAS_REQUIRE = {
    "onnx": ONNX_REQUIRES,
    "tests": ["pytest", "ruff", "scikit-image", *ONNX_REQUIRES],
}

setup(
    name="basicvsr-archival",
    version=read_version(),
    description="BasicVSR++ video super-resolution for ML-based video archival",
    long_description=README.read_text(encoding="utf-8") if README.is_file() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(exclude=["tests", "tests.*"]),
    # the C source of the deformable-convolution CPU kernel, compiled on first use
    package_data={"basicvsr_archival": ["models/ops/*.c"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
