"""Building blocks shared by the video super-resolution networks.

The layouts (and therefore the parameter names) follow MMEditing's ``ResidualBlockNoBN``,
``ResidualBlocksWithInputConv``, ``PixelShufflePack`` and ``flow_warp`` so that official
checkpoints load with strict key checking.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _scaled_kaiming_init_(conv: nn.Conv2d, scale: float) -> None:
    """Kaiming-normal (fan_in) init of ``conv`` times ``scale``, zero bias (as mmedit's init)."""
    nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in", nonlinearity="relu")
    with torch.no_grad():
        conv.weight.mul_(scale)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def make_layer(block: type[nn.Module], num_blocks: int, **kwargs) -> nn.Sequential:
    """Stack ``num_blocks`` instances of ``block(**kwargs)`` in an ``nn.Sequential``."""
    return nn.Sequential(*[block(**kwargs) for _ in range(num_blocks)])


class ResidualBlockNoBN(nn.Module):
    """Residual block without normalisation: ``x + res_scale * conv2(relu(conv1(x)))``.

    Args:
        mid_channels: number of channels of the input, the hidden layer and the output.
        res_scale: scale of the residual branch.

    Shapes: input ``(b, mid_channels, h, w)`` -> output ``(b, mid_channels, h, w)``.
    """

    def __init__(self, mid_channels: int = 64, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        # as in mmedit: small init of the residual branch when it is not rescaled
        if res_scale == 1.0:
            _scaled_kaiming_init_(self.conv1, 0.1)
            _scaled_kaiming_init_(self.conv2, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the residual block to ``x`` of shape ``(b, c, h, w)``."""
        out = self.conv2(self.relu(self.conv1(x)))
        out = out * self.res_scale
        # in place on the fresh conv output (its backward does not need it): saves an allocation
        out += x
        return out


class ResidualBlocksWithInputConv(nn.Module):
    """A 3x3 input convolution with LeakyReLU(0.1) followed by ``num_blocks`` ``ResidualBlockNoBN``.

    Args:
        in_channels: number of input channels.
        out_channels: number of output (and hidden) channels.
        num_blocks: number of residual blocks.

    Shapes: input ``(b, in_channels, h, w)`` -> output ``(b, out_channels, h, w)``.
    Parameters live under ``main.0`` (input conv) and ``main.2.<i>`` (residual blocks).
    """

    def __init__(self, in_channels: int, out_channels: int = 64, num_blocks: int = 30) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=True),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            make_layer(ResidualBlockNoBN, num_blocks, mid_channels=out_channels),
        )

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """Apply the input convolution and the residual blocks to ``feat`` ``(b, c_in, h, w)``."""
        return self.main(feat)


class PixelShufflePack(nn.Module):
    """Convolution to ``out_channels * scale_factor**2`` channels followed by a pixel shuffle.

    Args:
        in_channels: number of input channels.
        out_channels: number of output channels.
        scale_factor: spatial upsampling factor.
        upsample_kernel: kernel size of the convolution (odd; 'same' padding).

    Shapes: input ``(b, in_channels, h, w)`` -> output ``(b, out_channels, s*h, s*w)``.
    """

    def __init__(self, in_channels: int, out_channels: int, scale_factor: int, upsample_kernel: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_factor = scale_factor
        self.upsample_kernel = upsample_kernel
        self.upsample_conv = nn.Conv2d(
            in_channels,
            out_channels * scale_factor * scale_factor,
            upsample_kernel,
            padding=(upsample_kernel - 1) // 2,
        )
        self.init_weights()

    def init_weights(self) -> None:
        """Xavier-uniform init of the convolution, bias zero (as mmcv's ``xavier_init``)."""
        nn.init.xavier_uniform_(self.upsample_conv.weight, gain=1.0)
        nn.init.zeros_(self.upsample_conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` ``(b, c_in, h, w)`` to ``(b, c_out, s*h, s*w)``."""
        return F.pixel_shuffle(self.upsample_conv(x), self.scale_factor)


def flow_warp(
    x: torch.Tensor,
    flow: torch.Tensor,
    interpolation: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = True,
) -> torch.Tensor:
    """Warp ``x`` (n, c, h, w) with a pixel-unit optical flow ``flow`` (n, h, w, 2), channel order (dx, dy).

    Same semantics as mmedit's ``flow_warp``: output[p] = x[p + flow[p]] sampled with ``grid_sample``.
    """
    if x.size()[-2:] != flow.size()[1:3]:
        raise ValueError(
            f"The spatial sizes of input ({x.size()[-2:]}) and flow ({flow.size()[1:3]}) are not the same."
        )
    h, w = x.shape[-2:]
    # base grid of pixel coordinates, built directly on the right device and dtype
    grid_y, grid_x = torch.meshgrid(
        torch.arange(h, device=x.device, dtype=x.dtype),
        torch.arange(w, device=x.device, dtype=x.dtype),
        indexing="ij",
    )
    grid = torch.stack((grid_x, grid_y), 2)  # (h, w, 2)
    grid_flow = grid + flow  # (n, h, w, 2)
    # scale the sampling positions to [-1, 1]
    grid_flow_x = 2.0 * grid_flow[:, :, :, 0] / max(w - 1, 1) - 1.0  # (n, h, w)
    grid_flow_y = 2.0 * grid_flow[:, :, :, 1] / max(h - 1, 1) - 1.0  # (n, h, w)
    grid_flow = torch.stack((grid_flow_x, grid_flow_y), dim=3)  # (n, h, w, 2)
    return F.grid_sample(
        x, grid_flow, mode=interpolation, padding_mode=padding_mode, align_corners=align_corners
    )


def reflect_pad_to(x: torch.Tensor, min_h: int, min_w: int, multiple: int = 1) -> torch.Tensor:
    """Reflect-pad the bottom/right of ``x`` (b, c, h, w) to >= (min_h, min_w) and a multiple of ``multiple``.

    Padding larger than the frame is done by repeated reflection; a 1-px dimension is replicated.
    """
    h, w = x.shape[-2:]
    target_h = max(min_h, math.ceil(h / multiple) * multiple)
    target_w = max(min_w, math.ceil(w / multiple) * multiple)
    while x.shape[-2] < target_h or x.shape[-1] < target_w:
        cur_h, cur_w = x.shape[-2:]
        pad_h = min(target_h - cur_h, max(cur_h - 1, 0))
        pad_w = min(target_w - cur_w, max(cur_w - 1, 0))
        if (pad_h == 0 and cur_h < target_h) or (pad_w == 0 and cur_w < target_w):
            # a single row/column cannot be reflected: replicate it
            return F.pad(x, (0, target_w - cur_w, 0, target_h - cur_h), mode="replicate")
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    return x
