"""SPyNet optical-flow network (Ranjan & Black, CVPR 2017) as used by BasicVSR / BasicVSR++.

Parameter names follow MMEditing's implementation (``basic_module.{0..5}.basic_module.{0..4}.conv``,
buffers ``mean`` and ``std``) so official checkpoints load with strict key checking.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from .common import flow_warp


class _ConvAct(nn.Module):
    """A 7x7 convolution (parameters under ``conv``) optionally followed by ReLU, as mmcv's ``ConvModule``.

    Args:
        in_channels: number of input channels.
        out_channels: number of output channels.
        with_relu: whether a ReLU follows the convolution.

    Shapes: input ``(b, in_channels, h, w)`` -> output ``(b, out_channels, h, w)``.
    """

    def __init__(self, in_channels: int, out_channels: int, with_relu: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=1, padding=3)
        self.activate = nn.ReLU(inplace=True) if with_relu else None
        # mmcv ConvModule default: kaiming normal, fan_out, bias zero
        nn.init.kaiming_normal_(self.conv.weight, a=0, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve (and activate) ``x`` ``(b, c_in, h, w)``."""
        x = self.conv(x)
        if self.activate is not None:
            x = self.activate(x)
        return x


class SPyNetBasicModule(nn.Module):
    """One pyramid level of SPyNet: five 7x7 convolutions predicting a flow residue.

    Shapes: input ``(b, 8, h, w)`` = cat(ref (3), warped supp (3), upsampled flow (2)) -> ``(b, 2, h, w)``.
    Parameters live under ``basic_module.{0..4}.conv``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.basic_module = nn.Sequential(
            _ConvAct(8, 32, with_relu=True),
            _ConvAct(32, 64, with_relu=True),
            _ConvAct(64, 32, with_relu=True),
            _ConvAct(32, 16, with_relu=True),
            _ConvAct(16, 2, with_relu=False),
        )

    def forward(self, tensor_input: torch.Tensor) -> torch.Tensor:
        """Predict the flow residue from ``tensor_input`` ``(b, 8, h, w)``; returns ``(b, 2, h, w)``."""
        return self.basic_module(tensor_input)


def _load_pretrained(module: nn.Module, path: str) -> None:
    """Load a local SPyNet checkpoint into ``module``; ``mean``/``std`` may be absent from the file."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"SPyNet pretrained checkpoint not found: {path!r}. Download it yourself (e.g. the official "
            "spynet_20210409-c6c1bd09.pth) and pass its local path; nothing is downloaded automatically."
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state_dict, dict):
        raise TypeError(f"{path!r} does not hold a state dict (got {type(state_dict).__name__}).")
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    # a full BasicVSR(++) checkpoint: keep the SPyNet part ("[generator.]spynet.<key>")
    if any("spynet." in k for k in state_dict):
        state_dict = {k.split("spynet.", 1)[1]: v for k, v in state_dict.items() if "spynet." in k}
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if k not in ("mean", "std")]
    if missing or unexpected:
        raise RuntimeError(
            f"SPyNet checkpoint {path!r} does not match: missing keys {missing}, unexpected {unexpected}."
        )


class SPyNet(nn.Module):
    """SPyNet: a 6-level spatial-pyramid optical-flow network.

    Args:
        pretrained: optional local path of a checkpoint (bare SPyNet state dict, or a dict with a
            ``state_dict`` entry); a missing file raises ``FileNotFoundError``. Nothing is downloaded.

    Shapes: ``forward(ref, supp)`` takes two ``(n, 3, h, w)`` RGB images in [0, 1] and returns the
    flow ``(n, 2, h, w)`` in pixels, channels (dx, dy), such that ``flow_warp(supp, flow)`` ~ ``ref``.
    The images are resized to a multiple of 32 internally and the flow is rescaled back.
    """

    def __init__(self, pretrained: str | None = None) -> None:
        super().__init__()
        self.basic_module = nn.ModuleList([SPyNetBasicModule() for _ in range(6)])
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        if isinstance(pretrained, (str, os.PathLike)):
            _load_pretrained(self, os.fspath(pretrained))
        elif pretrained is not None:
            raise TypeError(
                f"'pretrained' must be a str (local path) or None, got {type(pretrained).__name__}."
            )

    def resize(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """``F.interpolate(x, **kwargs)``: every resize of the pyramid and of the in/outputs."""
        return F.interpolate(x, **kwargs)

    def compute_flow(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        """Flow (n, 2, h, w) from ``ref`` to ``supp`` (both (n, 3, h, w), h and w multiples of 32)."""
        n, _, h, w = ref.size()
        # normalise, then build the 6-level pyramids (finest first)
        refs = [(ref - self.mean) / self.std]
        supps = [(supp - self.mean) / self.std]
        for _ in range(5):
            refs.append(F.avg_pool2d(refs[-1], kernel_size=2, stride=2, count_include_pad=False))
            supps.append(F.avg_pool2d(supps[-1], kernel_size=2, stride=2, count_include_pad=False))
        refs = refs[::-1]
        supps = supps[::-1]

        flow = refs[0].new_zeros(n, 2, h // 32, w // 32)
        for level in range(len(refs)):
            if level == 0:
                flow_up = flow
            else:  # the coarser flow, upsampled x2 in size and value
                flow_up = self.resize(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            warped = flow_warp(supps[level], flow_up.permute(0, 2, 3, 1), padding_mode="border")
            # (n, 3 + 3 + 2, h_l, w_l) -> residue (n, 2, h_l, w_l)
            flow = flow_up + self.basic_module[level](torch.cat([refs[level], warped, flow_up], 1))
        return flow

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        """Flow ``(n, 2, h, w)`` from ``ref`` to ``supp`` (both ``(n, 3, h, w)``) at any size."""
        h, w = ref.shape[2:4]
        w_up = w if (w % 32) == 0 else 32 * (w // 32 + 1)
        h_up = h if (h % 32) == 0 else 32 * (h // 32 + 1)
        if (h_up, w_up) != (h, w):
            ref = self.resize(ref, size=(h_up, w_up), mode="bilinear", align_corners=False)
            supp = self.resize(supp, size=(h_up, w_up), mode="bilinear", align_corners=False)
        flow = self.compute_flow(ref, supp)
        if (h_up, w_up) != (h, w):
            flow = self.resize(flow, size=(h, w), mode="bilinear", align_corners=False)
            # rescale the flow values to the original resolution: (n, 2, h, w) * (1, 2, 1, 1)
            scale = flow.new_tensor([float(w) / float(w_up), float(h) / float(h_up)]).view(1, 2, 1, 1)
            flow = flow * scale
        return flow
