"""Inference backends of the plain network, applied on purpose: ``apply_backend(model, backend, settings)``.

* ``'torch'``: the network as built, plain PyTorch modules (training, GPU, ONNX export use it).
* ``'cpu_kernels'``: fused float32 CPU inference forwards (``cpu_kernels.py``: Winograd / NNPACK
  convolutions, the flow-guided DCN C kernel, concatenation fusion, buffer reuse, thread-pinned
  resizes), configured by one :class:`BackendSettings`; same parameters and state dict.
* ``'auto'``: ``cpu_kernels`` for a float32 model on the CPU where the C kernels build, else ``torch``.

Each model carries its own backend (the classes of its modules and the settings they hold): two
models in one process can run different backends. :func:`backend_record` says which one a model
runs, for archive manifests.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from .settings import CONV_IMPLS, DCN_IMPLS, WINOGRAD_TILES, BackendSettings

BACKENDS = ("auto", "cpu_kernels", "torch")
_KERNELS_MODULE = f"{__name__}.cpu_kernels"

__all__ = [
    "BACKENDS",
    "CONV_IMPLS",
    "DCN_IMPLS",
    "WINOGRAD_TILES",
    "BackendSettings",
    "apply_backend",
    "backend_record",
    "planned_record",
    "preferred_memory_format",
    "resolve_backend",
]


def _kernels_build() -> bool:
    """Whether the project's C kernels (DCN and Winograd) build and load here."""
    from ..ops.cpu_kernel import load_cpu_kernel
    from ..ops.winograd import winograd_available

    return load_cpu_kernel() is not None and winograd_available()


def resolve_backend(
    backend: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> str:
    """What ``backend`` comes down to for a model on ``device`` in ``dtype``: 'cpu_kernels' or 'torch'."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: use one of {', '.join(BACKENDS)}")
    if torch.device(device).type != "cpu" or dtype != torch.float32:
        return "torch"  # the kernels serve float32 CPU inference only
    if backend == "auto":
        return "cpu_kernels" if _kernels_build() else "torch"
    return backend


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the model's first parameter (CPU float32 for a model without any)."""
    param = next(model.parameters(), None)
    return (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)


def apply_backend(
    model: nn.Module, backend: str = "auto", settings: BackendSettings | None = None
) -> nn.Module:
    """Run ``model`` on ``backend`` ('auto', 'cpu_kernels' or 'torch'), in place; returns ``model``.

    ``settings`` (default :meth:`BackendSettings.from_env`) configure the ``cpu_kernels`` backend.
    A model on CUDA or in another dtype gets ``'torch'``. Parameters and state dict are unchanged.
    """
    settings = BackendSettings.from_env() if settings is None else settings
    chosen = resolve_backend(backend, *_model_device_dtype(model))
    if chosen == "cpu_kernels":
        from basicvsr_archival.utils.memory import tune_malloc

        from . import cpu_kernels

        cpu_kernels.install(model, settings)
        if settings.malloc_tune:
            tune_malloc()  # reuse freed activations instead of faulting in fresh pages (utils/memory.py)
    elif _KERNELS_MODULE in sys.modules:  # only a model the kernels were installed in can need this
        sys.modules[_KERNELS_MODULE].uninstall(model)
    return model


def _installed_settings(model: nn.Module) -> BackendSettings | None:
    """The settings of the ``cpu_kernels`` backend installed in ``model``, or None (plain torch)."""
    if _KERNELS_MODULE not in sys.modules:
        return None
    return sys.modules[_KERNELS_MODULE].installed_settings(model)


def _record(backend: str, settings: BackendSettings | None) -> dict[str, Any]:
    """The manifest record of ``backend`` ('cpu_kernels' or 'torch') with ``settings``."""
    rec: dict[str, Any] = {"backend": backend, "settings": None, "kernel_variant": None, "c_kernels": None}
    if backend == "cpu_kernels":
        from ..ops import cpu_kernel

        rec["settings"] = (settings or BackendSettings()).to_dict()
        rec["kernel_variant"] = getattr(cpu_kernel, "kernel_variant", lambda: None)()
        rec["c_kernels"] = _kernels_build()
    # cpu_kernels: the bits do not depend on the thread count; plain torch: pinned to this count
    rec["threads"] = "any" if backend == "cpu_kernels" else torch.get_num_threads()
    rec["torch"] = torch.__version__.split("+")[0]
    rec["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return rec


def backend_record(model: nn.Module) -> dict[str, Any]:
    """What runs ``model``: backend, settings, kernel variant, threads policy, torch version, CPU ISA."""
    settings = _installed_settings(model)
    return _record("torch" if settings is None else "cpu_kernels", settings)


def planned_record(backend: str = "auto", settings: BackendSettings | None = None) -> dict[str, Any]:
    """:func:`backend_record` of a float32 CPU model after ``apply_backend(model, backend, settings)``."""
    settings = BackendSettings.from_env() if settings is None else settings
    chosen = resolve_backend(backend)
    return _record(chosen, settings if chosen == "cpu_kernels" else None)


def preferred_memory_format(
    backend: str, device: torch.device | str, settings: BackendSettings | None = None
) -> torch.memory_format:
    """Activation layout that runs BasicVSR++ fastest on ``device`` under ``backend``.

    ``cpu_kernels``: see ``ops/fast_conv.preferred_memory_format`` (channels-last where the Winograd
    kernel builds, NCHW where only NNPACK runs); plain torch: channels-last (oneDNN's and cuDNN's
    NHWC kernels, about 2x faster than NCHW for BasicVSR++ on the CPU).
    """
    if resolve_backend(backend, device) != "cpu_kernels":
        return torch.channels_last
    from ..ops.fast_conv import preferred_memory_format as kernels_format

    settings = BackendSettings.from_env() if settings is None else settings
    return kernels_format(device, settings.conv_impl)
