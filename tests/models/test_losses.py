"""Pixel losses: values, reductions, weights and registry."""

import pytest
import torch

from basicvsr_archival.models import CharbonnierLoss, L1Loss, MSELoss
from basicvsr_archival.registry import MODELS


@pytest.fixture
def pair():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 3, 4, 5, generator=generator), torch.rand(2, 3, 3, 4, 5, generator=generator)


def test_charbonnier_values(pair):
    pred, target = pair
    elementwise = torch.sqrt((pred - target) ** 2 + 1e-12)
    torch.testing.assert_close(CharbonnierLoss()(pred, target), elementwise.mean())
    torch.testing.assert_close(CharbonnierLoss(reduction="sum")(pred, target), elementwise.sum())
    torch.testing.assert_close(CharbonnierLoss(reduction="none")(pred, target), elementwise)
    torch.testing.assert_close(CharbonnierLoss(loss_weight=0.5)(pred, target), 0.5 * elementwise.mean())
    assert CharbonnierLoss().eps == 1e-12


def test_l1_mse(pair):
    pred, target = pair
    torch.testing.assert_close(L1Loss()(pred, target), (pred - target).abs().mean())
    torch.testing.assert_close(MSELoss(reduction="sum")(pred, target), ((pred - target) ** 2).sum())


def test_weighted_mean(pair):
    pred, target = pair
    weight = torch.zeros(2, 3, 1, 4, 5)
    weight[:, :, :, :2] = 1.0
    loss = L1Loss()(pred, target, weight)
    expected = (pred - target).abs()[:, :, :, :2].mean()
    torch.testing.assert_close(loss, expected)


def test_invalid_reduction():
    with pytest.raises(ValueError):
        CharbonnierLoss(reduction="max")


@pytest.mark.parametrize("name", ["CharbonnierLoss", "L1Loss", "MSELoss"])
def test_registry(name, pair):
    loss = MODELS.build(dict(type=name, loss_weight=2.0, reduction="mean"))
    value = loss(*pair)
    assert value.dim() == 0 and torch.isfinite(value)
    assert not list(loss.state_dict())
