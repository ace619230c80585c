"""The one module of the package that reads environment variables (``engine/launcher.py`` aside).

Every variable the package honours is listed in :data:`VARIABLES` with what it does; anything else
asked for is a programming error. The launcher reads torchrun's ``RANK``/``WORLD_SIZE``/... itself
(they are the launcher's protocol, not settings). Child processes (ffmpeg, the C compiler) inherit the
environment as usual.

None of these variables changes the output bits of a restore: the CPU backend's settings (convolution
implementation, Winograd tile, DCN implementation, chunk size, heap tuning) are passed explicitly as
a settings object (``models/backends``), and these variables are only documented overrides of its
defaults, recorded in the archive manifest like any other setting.
"""

from __future__ import annotations

import os

VARIABLES: dict[str, str] = {
    "BASICVSR_FFMPEG": "path of the ffmpeg binary (default: the one bundled by imageio-ffmpeg)",
    "BASICVSR_ARCHIVAL_CHKPTS": "extra folders searched for base checkpoints (os.pathsep-separated)",
    "BASICVSR_DEBUG": "1: tools print tracebacks instead of one 'error:' line (alias of their --debug)",
    "BASICVSR_CACHE_DIR": "folder for just-in-time built CPU kernels (default ~/.cache/basicvsr_archival)",
    "CC": "C compiler for the just-in-time kernel build (default: cc, gcc or clang on PATH)",
    "BASICVSR_CONV_IMPL": "default convolution implementation of the CPU backend settings",
    "BASICVSR_WINOGRAD_TILE": "default Winograd output tile (4 or 6) of the CPU backend settings",
    "BASICVSR_DCN_IMPL": "default deformable-convolution implementation of the CPU backend settings",
    "BASICVSR_DCN_CHUNK_MB": "default deformable-convolution column chunk (MB) of the CPU backend settings",
    "BASICVSR_MALLOC_TUNE": "default heap tuning (0 = off) of the CPU backend settings",
}


def read(name: str, default: str | None = None) -> str | None:
    """The value of the documented variable ``name`` (stripped), or ``default`` when unset or empty."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not a documented environment variable of basicvsr_archival")
    value = os.environ.get(name, "").strip()
    return value or default


def read_flag(name: str, default: bool) -> bool:
    """A documented on/off variable: '0', 'false', 'no', 'off' are off, any other value is on."""
    value = read(name)
    if value is None:
        return default
    return value.lower() not in ("0", "false", "no", "off")
