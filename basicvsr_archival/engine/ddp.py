"""Distributed model wrappers that also work with CPU-only torch (gloo), selected by ``model_wrapper_cfg``.

mmengine's ``Runner.wrap_model`` always passes ``device_ids=[LOCAL_RANK]`` to wrappers that subclass
``DistributedDataParallel``; torch rejects ``device_ids`` for CPU modules. These wrappers drop
``device_ids`` / ``output_device`` when the model is not on a CUDA device and otherwise behave exactly
like mmengine's wrappers.

Use :class:`SeparateDistributedDataParallel` for the BasicVSR restorer: it calls the restorer's own
``train_step`` (which applies the SPyNet ``fix_iter`` schedule) and wraps only the generator in DDP.
:class:`DistributedDataParallel` (mmengine's plain wrapper) runs forward/backward itself and so
bypasses a model's ``train_step``. Its checkpoints keep the plain layout (``generator.<key>``): the
per-sub-module DDP would otherwise insert ``module.`` (``generator.module.<key>``), which neither
mmengine's loader (it unwraps wrappers) nor ``basicvsr_archival.apis.init_model`` expects.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from mmengine.model import MMDistributedDataParallel, MMSeparateDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch import nn

__all__ = [
    "CPU_COMPATIBLE_WRAPPERS",
    "DistributedDataParallel",
    "SeparateDistributedDataParallel",
    "drop_cpu_device_ids",
    "use_cpu_compatible_wrapper",
]

# mmengine's DDP wrappers (None: the one Runner.wrap_model builds by default) -> this module's equivalents
CPU_COMPATIBLE_WRAPPERS = {
    None: "CPUCompatibleDDP",
    "MMDistributedDataParallel": "CPUCompatibleDDP",
    "MMSeparateDistributedDataParallel": "CPUCompatibleSeparateDDP",
}


def drop_cpu_device_ids(module: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove ``device_ids`` / ``output_device`` from DDP kwargs unless ``module`` lives on a CUDA device."""
    param = next(module.parameters(), None)
    on_cuda = param is not None and param.device.type == "cuda" and torch.cuda.is_available()
    if not on_cuda:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("device_ids", "output_device")}
    return kwargs


@MODEL_WRAPPERS.register_module(name="CPUCompatibleDDP")
class DistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that accepts (and drops) ``device_ids`` for CPU / gloo training."""

    def __init__(self, module: nn.Module, detect_anomalous_params: bool = False, **kwargs: Any) -> None:
        super().__init__(module, detect_anomalous_params, **drop_cpu_device_ids(module, kwargs))


@MODEL_WRAPPERS.register_module(name="CPUCompatibleSeparateDDP")
class SeparateDistributedDataParallel(MMSeparateDistributedDataParallel):
    """``MMSeparateDistributedDataParallel`` (sub-modules wrapped separately, ``train_step`` delegated to
    the model) that drops ``device_ids`` for CPU / gloo training."""

    def __init__(
        self,
        module: nn.Module,
        broadcast_buffers: bool = False,
        find_unused_parameters: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            module, broadcast_buffers, find_unused_parameters, **drop_cpu_device_ids(module, kwargs)
        )
        wrapped = [
            name for name, sub in module._modules.items() if isinstance(sub, MMDistributedDataParallel)
        ]
        module._register_state_dict_hook(_unwrapped_keys_hook(wrapped))


def _unwrapped_keys_hook(wrapped: list[str]) -> Callable:
    """State-dict hook renaming `{prefix}{name}.module.<key>` to `{prefix}{name}.<key>` (wrapped children)."""

    def hook(module: nn.Module, state_dict: OrderedDict, prefix: str, local_metadata: dict) -> OrderedDict:
        olds = [(f"{prefix}{name}.module.", f"{prefix}{name}.") for name in wrapped]
        renamed = OrderedDict()
        for key, value in state_dict.items():
            for old, new in olds:
                if key.startswith(old):
                    key = new + key[len(old) :]
                    break
            renamed[key] = value
        renamed._metadata = getattr(state_dict, "_metadata", None)  # type: ignore[attr-defined]
        return renamed

    return hook


def use_cpu_compatible_wrapper(cfg: Any) -> str | None:
    """Make a distributed config use this module's wrappers in place of mmengine's (in place).

    A config without ``model_wrapper_cfg`` (mmengine then builds ``MMDistributedDataParallel`` with
    ``broadcast_buffers=False`` and the config's ``find_unused_parameters``) gets the same wrapper in
    its CPU-compatible form; a config naming ``MMDistributedDataParallel`` or
    ``MMSeparateDistributedDataParallel`` (e.g. one from mmagic) gets the equivalent here. On a GPU they
    behave exactly like mmengine's; on the CPU (gloo) mmengine's die on ``device_ids``. Other wrapper
    types are left alone. Returns the wrapper type now configured, or None if left alone.
    """
    wrapper = cfg.get("model_wrapper_cfg")
    if wrapper is None:
        find_unused = bool(cfg.get("find_unused_parameters", False))
        cfg.model_wrapper_cfg = dict(
            type=CPU_COMPATIBLE_WRAPPERS[None], broadcast_buffers=False, find_unused_parameters=find_unused
        )
        return cfg.model_wrapper_cfg["type"]
    kind = wrapper.get("type", "MMDistributedDataParallel")
    name = kind.rsplit(".", 1)[-1] if isinstance(kind, str) else getattr(kind, "__name__", None)
    if name is None or name not in CPU_COMPATIBLE_WRAPPERS:
        return None
    wrapper["type"] = CPU_COMPATIBLE_WRAPPERS[name]
    return wrapper["type"]
