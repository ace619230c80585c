"""The BasicVSR restorer: an mmengine ``BaseModel`` wrapping a generator (e.g. BasicVSR++) and a pixel loss.

Data contract (a batch after mmengine's ``default_collate``)::

    dict(inputs=Tensor (n, t, 3, h, w) float32 RGB in [0, 1],
         data_samples=dict(gt=Tensor (n, t, 3, H, W) (optional), key=list[str], ...))

``forward(inputs, data_samples, mode)`` returns the generator output for 'tensor',
``dict(loss_pix=...)`` for 'loss' and, for 'predict', one dict per sample
``dict(pred=Tensor (t, 3, H, W) clamped to [0, 1] on the CPU, gt=Tensor (t, 3, H, W) if given, key=str)``.

Training fixes the SPyNet weights while the iteration (``MessageHub`` info 'iter', which mmengine's
``RuntimeInfoHook`` sets) is below ``train_cfg['fix_iter']`` (official schedule). The schedule is
applied in ``train_step`` and again in 'loss' mode while training, so it holds under any wrapper.
Distributed configs use ``model_wrapper_cfg=dict(type='CPUCompatibleSeparateDDP',
find_unused_parameters=True)`` (``basicvsr_archival/engine/ddp.py``): it calls this ``train_step``,
keeps checkpoint keys as ``generator.<key>``, runs on CPU (gloo) and GPU, and tolerates the
parameters that get no gradient while SPyNet is fixed.
"""

from __future__ import annotations

from typing import Any

import torch
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper
from torch import nn

from basicvsr_archival.registry import MODELS

# parameter-name fragments of the flow / alignment sub-networks that the official schedule fixes
FIXED_PARAM_KEYS = ("spynet", "edvr")


def _build(cfg: dict | nn.Module) -> nn.Module:
    """Build ``cfg`` with ``MODELS`` unless it is already a module."""
    return cfg if isinstance(cfg, nn.Module) else MODELS.build(cfg)


def _current_iter() -> int:
    """The runner's current iteration from mmengine's ``MessageHub`` (0 when none is set)."""
    return int(MessageHub.get_current_instance().get_info("iter", 0) or 0)


@MODELS.register_module()
class BasicVSR(BaseModel):
    """Video super-resolution restorer (BasicVSR / BasicVSR++ training and inference wrapper).

    Args:
        generator: config (or module) of the network; maps (n, t, 3, h, w) to (n, t, 3, H, W).
        pixel_loss: config (or module) of the pixel loss, e.g. ``dict(type='CharbonnierLoss')``.
        train_cfg: optional; ``fix_iter`` (default 0) is the number of iterations SPyNet stays fixed.
        test_cfg: optional; stored for evaluation code (e.g. ``metrics``, ``crop_border``).
        data_preprocessor: optional config of the data preprocessor (default mmengine's
            ``BaseDataPreprocessor``, which only moves the data to the model's device).
        init_cfg: optional mmengine initialisation config.

    The state dict holds ``generator.<network key>`` only, the layout of official checkpoints.
    """

    def __init__(
        self,
        generator: dict | nn.Module,
        pixel_loss: dict | nn.Module | None = None,
        train_cfg: dict | None = None,
        test_cfg: dict | None = None,
        data_preprocessor: dict | nn.Module | None = None,
        init_cfg: dict | list | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.generator = _build(generator)
        self.pixel_loss = _build(pixel_loss) if pixel_loss is not None else None
        self.train_cfg = dict(train_cfg) if train_cfg is not None else {}
        self.test_cfg = dict(test_cfg) if test_cfg is not None else {}
        self.fix_iter = int(self.train_cfg.get("fix_iter", 0))

    # ------------------------------------------------------------------ training schedule
    def _fixed_params(self) -> list[nn.Parameter]:
        """Generator parameters fixed during the first ``fix_iter`` iterations (SPyNet)."""
        return [
            p for name, p in self.generator.named_parameters() if any(k in name for k in FIXED_PARAM_KEYS)
        ]

    def apply_fix_iter_schedule(self, cur_iter: int) -> None:
        """Freeze SPyNet while ``cur_iter < fix_iter``; from ``fix_iter`` on, train the whole generator."""
        fixed = self._fixed_params()
        if cur_iter < self.fix_iter:
            for p in fixed:
                p.requires_grad_(False)
        elif any(not p.requires_grad for p in fixed):
            # the official code unfreezes the whole generator once the fixed phase ends
            self.generator.requires_grad_(True)

    def train_step(self, data: dict | tuple | list, optim_wrapper: OptimWrapper) -> dict[str, torch.Tensor]:
        """One optimisation step with the official SPyNet fix schedule; returns the log variables."""
        self.apply_fix_iter_schedule(_current_iter())
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode="loss")
        parsed_losses, log_vars = self.parse_losses(losses)
        optim_wrapper.update_params(parsed_losses)
        return log_vars

    # ------------------------------------------------------------------ forward
    def forward(
        self, inputs: torch.Tensor, data_samples: dict | list | None = None, mode: str = "tensor"
    ) -> torch.Tensor | dict[str, torch.Tensor] | list[dict[str, Any]]:
        """Run the generator on ``inputs`` (n, t, 3, h, w); see the module docstring for the modes."""
        if mode == "tensor":
            return self.generator(inputs)
        if mode == "loss":
            return self.loss(inputs, data_samples)
        if mode == "predict":
            return self.predict(inputs, data_samples)
        raise ValueError(f"invalid mode {mode!r}: expected 'tensor', 'loss' or 'predict'")

    def loss(self, inputs: torch.Tensor, data_samples: dict | list | None) -> dict[str, torch.Tensor]:
        """``dict(loss_pix=pixel_loss(generator(inputs), gt))``, gt (n, t, 3, H, W) from ``data_samples``."""
        if self.pixel_loss is None:
            raise RuntimeError("BasicVSR was built without a pixel_loss; 'loss' mode is unavailable.")
        gt = _batched_field(data_samples, "gt")
        if gt is None:
            raise KeyError("'loss' mode needs data_samples['gt'] of shape (n, t, 3, H, W)")
        if self.training:
            # the DDP wrapper's train_step does not call ours: apply the SPyNet schedule here as well
            self.apply_fix_iter_schedule(_current_iter())
        output = self.generator(inputs)
        gt = gt.to(device=output.device, dtype=output.dtype)
        return dict(loss_pix=self.pixel_loss(output, gt))

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor, data_samples: dict | list | None = None) -> list[dict[str, Any]]:
        """One ``dict(pred=(t, 3, H, W) in [0, 1] on CPU, gt=... if given, key=str)`` per sample."""
        output = self.generator(inputs).clamp_(0, 1).cpu()  # (n, t, 3, H, W)
        gt = _batched_field(data_samples, "gt")
        keys = _batched_field(data_samples, "key")
        results = []
        for i in range(output.size(0)):
            sample: dict[str, Any] = dict(pred=output[i])
            if gt is not None:
                sample["gt"] = gt[i].detach().cpu()
            sample["key"] = str(keys[i]) if keys is not None else str(i)
            results.append(sample)
        return results


def _batched_field(data_samples: dict | list | tuple | None, name: str) -> Any:
    """``data_samples[name]`` for the collated dict layout; stacks/lists it for a list of per-sample dicts."""
    if data_samples is None:
        return None
    if isinstance(data_samples, dict):
        return data_samples.get(name)
    values = [s.get(name) if isinstance(s, dict) else getattr(s, name, None) for s in data_samples]
    if any(v is None for v in values):
        return None
    return torch.stack(values) if isinstance(values[0], torch.Tensor) else values
