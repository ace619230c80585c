"""Pixel-wise losses (Charbonnier, L1, MSE) with MMEditing's reduction and weighting semantics."""

from __future__ import annotations

import torch
from torch import nn

from basicvsr_archival.registry import MODELS

_REDUCTIONS = ("none", "mean", "sum")


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce an element-wise ``loss`` with 'none', 'mean' or 'sum'."""
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def mask_reduce_loss(
    loss: torch.Tensor, weight: torch.Tensor | None = None, reduction: str = "mean", sample_wise: bool = False
) -> torch.Tensor:
    """Apply an element-wise ``weight`` to ``loss`` and reduce it as mmedit does.

    With a weight and 'mean', the sum is divided by the sum of the weights (per sample and then
    averaged over the batch when ``sample_wise``). ``weight`` has the rank of ``loss``; its channel
    dimension (dim 1 for 4-D, dim 2 for 5-D video tensors) may be 1.
    """
    if weight is not None:
        if weight.dim() != loss.dim():
            raise ValueError(f"weight rank {weight.dim()} does not match loss rank {loss.dim()}")
        loss = loss * weight
    if weight is None or reduction != "mean":
        return reduce_loss(loss, reduction)
    weight = weight.expand_as(loss)
    eps = 1e-12
    if sample_wise:
        dims = list(range(1, loss.dim()))
        weight_sum = weight.sum(dim=dims, keepdim=True)  # (b, 1, ...)
        return (loss / (weight_sum + eps)).sum() / weight.size(0)
    return loss.sum() / (weight.sum() + eps)


class _PixelLoss(nn.Module):
    """Base of the pixel-wise losses: ``loss_weight * reduce(f(pred, target) * weight)``.

    Args:
        loss_weight: multiplier of the loss.
        reduction: 'none', 'mean' or 'sum'.
        sample_wise: with a weight and 'mean', normalise per sample before averaging over the batch.

    Shapes: ``pred`` and ``target`` of any equal shape, e.g. (n, t, c, h, w) or (n, c, h, w);
    optional ``weight`` of the same rank (broadcastable). 'none' returns the element-wise loss.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", sample_wise: bool = False) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.sample_wise = sample_wise

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Element-wise loss of ``pred`` against ``target``."""
        raise NotImplementedError

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        """Weighted, reduced loss of ``pred`` against ``target``."""
        loss = mask_reduce_loss(self.elementwise(pred, target), weight, self.reduction, self.sample_wise)
        return self.loss_weight * loss


@MODELS.register_module()
class CharbonnierLoss(_PixelLoss):
    """Charbonnier loss ``sqrt((pred - target)^2 + eps)``, a differentiable L1 variant.

    Args:
        loss_weight: multiplier of the loss (default 1.0).
        reduction: 'none', 'mean' (default) or 'sum'.
        sample_wise: with a weight and 'mean', normalise per sample before averaging over the batch.
        eps: the epsilon inside the square root (default 1e-12, as mmedit).

    Shapes: ``pred``/``target`` of equal shape, e.g. (n, t, c, h, w); scalar output unless 'none'.
    """

    def __init__(
        self, loss_weight: float = 1.0, reduction: str = "mean", sample_wise: bool = False, eps: float = 1e-12
    ) -> None:
        super().__init__(loss_weight, reduction, sample_wise)
        self.eps = eps

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``sqrt((pred - target)^2 + eps)`` element-wise."""
        return torch.sqrt((pred - target) ** 2 + self.eps)


@MODELS.register_module()
class L1Loss(_PixelLoss):
    """Mean absolute error.

    Args:
        loss_weight: multiplier of the loss (default 1.0).
        reduction: 'none', 'mean' (default) or 'sum'.
        sample_wise: with a weight and 'mean', normalise per sample before averaging over the batch.

    Shapes: ``pred``/``target`` of equal shape, e.g. (n, t, c, h, w); scalar output unless 'none'.
    """

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``|pred - target|`` element-wise."""
        return torch.abs(pred - target)


@MODELS.register_module()
class MSELoss(_PixelLoss):
    """Mean squared error.

    Args:
        loss_weight: multiplier of the loss (default 1.0).
        reduction: 'none', 'mean' (default) or 'sum'.
        sample_wise: with a weight and 'mean', normalise per sample before averaging over the batch.

    Shapes: ``pred``/``target`` of equal shape, e.g. (n, t, c, h, w); scalar output unless 'none'.
    """

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(pred - target)^2`` element-wise."""
        return (pred - target) ** 2
