"""Install basicvsr-archival: ``pip install torch==2.13.0 && pip install -e ".[tests]"``."""

import importlib.util
import os
import re
from pathlib import Path

from setuptools import Distribution, find_packages, setup
from setuptools.command.build_py import build_py

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

# the 'ray' engine of collections (archival/engines.py; tested with ray 2.60.0)
RAY_REQUIRES = ["ray>=2.9"]

EXTRAS_REQUIRE = {
    "onnx": ONNX_REQUIRES,
    "ray": RAY_REQUIRES,
    "tests": ["pytest", "ruff", "scikit-image", *ONNX_REQUIRES, *RAY_REQUIRES],
}


def load_kernel_builder():
    """``basicvsr_archival/models/ops/build_kernels.py`` loaded by path (stdlib only; no torch here)."""
    path = HERE / "basicvsr_archival" / "models" / "ops" / "build_kernels.py"
    spec = importlib.util.spec_from_file_location("_basicvsr_build_kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def console_scripts() -> list[str]:
    """The tools' commands (``basicvsr-archive``, ...) from ``basicvsr_archival/tools/commands.py``."""
    path = HERE / "basicvsr_archival" / "tools" / "commands.py"
    spec = importlib.util.spec_from_file_location("_basicvsr_commands", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.console_scripts()


class BuildPyWithKernels(build_py):
    """``build_py`` that also compiles the CPU kernels (x86-64-v3 + portable) into ``models/ops/_lib``.

    A wheel gets them in its build folder, an editable install (``pip install -e .``) in the source
    tree. A failed build only warns: the package then builds the kernel just in time on first use.
    """

    def run(self):
        """Copy the Python files as usual, then build the kernels."""
        super().run()
        builder = load_kernel_builder()
        if getattr(self, "editable_mode", False):
            out = builder.LIB_DIR
        else:
            out = Path(self.build_lib) / "basicvsr_archival" / "models" / "ops" / "_lib"
        try:
            builder.build_all(out, os.environ.get("CC"), log=lambda line: print(line, flush=True))
        except Exception as exc:  # never fail the install for a missing kernel
            print(f"warning: building the CPU kernels failed ({exc}); they are built on first use instead")


class BinaryDistribution(Distribution):
    """The wheel holds compiled kernels: tag it for this platform, not ``py3-none-any``."""

    def has_ext_modules(self):
        """True: platform-specific wheel."""
        return True


setup(
    name="basicvsr-archival",
    version=read_version(),
    description="BasicVSR++ video super-resolution for ML-based video archival",
    long_description=README.read_text(encoding="utf-8") if README.is_file() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(exclude=["tests", "tests.*"]),
    # the C sources of the CPU kernels: built at install (BuildPyWithKernels), else just in time
    package_data={"basicvsr_archival": ["models/ops/*.c"]},
    cmdclass={"build_py": BuildPyWithKernels},
    distclass=BinaryDistribution,
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": console_scripts()},
)
