"""The ``cpu_kernels`` backend: fused float32 CPU inference forwards for the plain BasicVSR++ network.

:func:`install` swaps the class of the network's modules (in place, same parameters, buffers and
state dict keys) for the subclasses below, each holding the model's :class:`BackendSettings`:

* ``nn.Conv2d`` -> :class:`~basicvsr_archival.models.ops.fast_conv.Conv2d` (Winograd / NNPACK /
  GEMM paths, each following ReLU / LeakyReLU, residual add and pixel shuffle fused into the store);
* residual blocks, input convolutions, pixel-shuffle stages: one fused call per convolution, and
  lists of tensors whose concatenation is fused into the first convolution (no ``torch.cat``);
* the alignment: the flow-guided DCN C kernel (``ops/cpu_fused.py``) computing offsets and masks
  from the raw ``conv_offset`` output;
* propagation and reconstruction: the C ``flow_warp`` for channels-last features, and the previous
  frame's big intermediates handed back as output buffers (fresh pages cost ~0.3 ms per MB);
* the bilinear resizes (SPyNet's and the x4 skip) on one intra-op thread, so the output bits do
  not depend on the thread count (``utils/threads.py``).

Each path falls back to the plain ops per call (autograd, other devices and dtypes, tracing), so
results and gradients there equal the plain network's. :func:`uninstall` restores the plain classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from basicvsr_archival.utils.threads import one_cpu_thread

from ..basicvsr_plusplus import BasicVSRPlusPlus, SecondOrderDeformableAlignment
from ..common import PixelShufflePack, ResidualBlockNoBN, ResidualBlocksWithInputConv, flow_warp
from ..ops.cpu_fused import flow_guided_deform_conv_cpu, flow_warp_cpu, fused_cpu_ok
from ..ops.fast_conv import Conv2d, run_sequential
from ..ops.modulated_deform_conv import modulated_deform_conv2d
from ..spynet import SPyNet
from .settings import BackendSettings


def fast_flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``flow_warp(x, flow)``: the C kernel for a channels-last float32 CPU ``x`` (n, c, h, w), else plain."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and fused_cpu_ok(x, flow):
        return flow_warp_cpu(x, flow)  # channels-last in and out
    return flow_warp(x, flow)


class FusedResidualBlockNoBN(ResidualBlockNoBN):
    """``ResidualBlockNoBN`` as two fused convolutions: ``conv2(relu(conv1(x))) + x`` (res_scale 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the residual block to ``x`` (b, c, h, w)."""
        if self.res_scale == 1.0:
            return self.conv2.forward_fused(self.conv1.forward_fused(x, "relu"), residual=x)
        return super().forward(x)


class FusedResidualBlocksWithInputConv(ResidualBlocksWithInputConv):
    """``ResidualBlocksWithInputConv`` taking a tensor or a list of tensors to concatenate (fused)."""

    def forward(self, feat: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        """(b, c_in, h, w), or parts whose channels add up to c_in -> (b, c_out, h, w)."""
        return run_sequential(self.main, feat)


class FusedPixelShufflePack(PixelShufflePack):
    """``PixelShufflePack`` with the following activation and an output buffer fused into the conv."""

    def forward_act(
        self, x: torch.Tensor, act: str, slope: float = 0.1, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``act(self(x))`` (the activation commutes with the shuffle); ``out``: a reusable buffer."""
        return self.upsample_conv.forward_fused(x, act, slope, shuffle=self.scale_factor, out=out)


class ThreadPinnedUpsample(nn.Upsample):
    """``nn.Upsample`` computed on one intra-op thread (same bits for any thread count)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Resize ``x`` (n, c, h, w)."""
        with one_cpu_thread(x):
            return super().forward(x)


class FastSPyNet(SPyNet):
    """``SPyNet`` whose bilinear resizes run on one intra-op thread (same bits for any thread count)."""

    def resize(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """``F.interpolate(x, **kwargs)`` on one thread."""
        with one_cpu_thread(x):
            return F.interpolate(x, **kwargs)


class FusedSecondOrderDeformableAlignment(SecondOrderDeformableAlignment):
    """The alignment with its offset convolutions fused and the flow-guided DCN in one C kernel."""

    backend_settings: BackendSettings = BackendSettings()

    def forward(
        self,
        x: torch.Tensor,
        extra_feat: torch.Tensor | list[torch.Tensor],
        flow_1: torch.Tensor,
        flow_2: torch.Tensor,
    ) -> torch.Tensor:
        """Align ``x`` (b, 2c, h, w); ``extra_feat`` (b, 3c, h, w) may be a list of parts to concatenate."""
        parts = [extra_feat] if isinstance(extra_feat, torch.Tensor) else list(extra_feat)
        first = parts[0]
        if first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous():
            # one memory format for the fused concatenation, so the offset convolutions stay channels-last
            flow_1, flow_2 = (f.contiguous(memory_format=torch.channels_last) for f in (flow_1, flow_2))
        out = run_sequential(self.conv_offset, [*parts, flow_1, flow_2])  # (b, 3 * g * k, h, w)
        settings = self.backend_settings
        if self.fused_kernel_applies(x, out, flow_1, flow_2):
            # offsets and masks are computed inside the C kernel from ``out`` (offset_and_mask's equations)
            return flow_guided_deform_conv_cpu(
                x, out, flow_1, flow_2, self.max_residue_magnitude, self.weight, self.bias,
                self.padding, self.deform_groups,
            )  # fmt: skip
        offset, mask = self.offset_and_mask(out, flow_1, flow_2)
        impl = "cpu_fused" if settings.dcn_impl == "auto" else settings.dcn_impl
        return modulated_deform_conv2d(
            x, offset, mask, self.weight, self.bias, self.stride, self.padding, self.dilation,
            self.groups, self.deform_groups, impl=impl, chunk_mb=settings.dcn_chunk_mb,
        )  # fmt: skip

    def fused_kernel_applies(self, x: torch.Tensor, *tensors: torch.Tensor) -> bool:
        """Whether the fused flow-guided C kernel computes this call (fp32 CPU inference, 'same' conv)."""
        if self.backend_settings.dcn_impl not in ("auto", "cpu_fused"):
            return False
        kh, kw = self.kernel_size
        same = self.stride == (1, 1) and self.dilation == (1, 1) and self.padding == (kh // 2, kw // 2)
        if not (same and kh % 2 and kw % 2 and self.groups == 1):
            return False
        if x[0].numel() >= 2**31:  # the kernel's corner offsets are 32-bit
            return False
        return fused_cpu_ok(x, *tensors, self.weight, self.bias)


class FusedBasicVSRPlusPlus(BasicVSRPlusPlus):
    """``BasicVSRPlusPlus`` whose propagation and reconstruction hand lists and buffers to fused calls."""

    backend_settings: BackendSettings = BackendSettings()

    def propagate(
        self,
        feats: dict[str, list[torch.Tensor]],
        flows: torch.Tensor,
        module_name: str,
        cpu_cache: bool = False,
        device: torch.device | None = None,
    ) -> dict[str, list[torch.Tensor]]:
        """``BasicVSRPlusPlus.propagate`` with the concatenations fused into the first convolutions."""
        n, t_flow, _, h, w = flows.size()
        device = flows.device if device is None else device
        frame_idx = list(range(t_flow + 1))
        flow_idx = list(range(-1, t_flow))
        if "backward" in module_name:
            frame_idx = frame_idx[::-1]
            flow_idx = frame_idx
        other_branches = [k for k in feats if k not in ("spatial", module_name)]
        deform_align, backbone = self.deform_align[module_name], self.backbone[module_name]
        branch_feats = feats[module_name]

        def fetch(t: torch.Tensor) -> torch.Tensor:
            return t.to(device) if cpu_cache else t

        feat_prop = torch.zeros(n, self.mid_channels, h, w, dtype=flows.dtype, device=device)
        for i, idx in enumerate(frame_idx):
            feat_current = fetch(feats["spatial"][idx])
            if i > 0:  # second-order deformable alignment
                flow_n1 = fetch(flows[:, flow_idx[i]])  # (n, 2, h, w)
                cond_n1 = fast_flow_warp(feat_prop, flow_n1.permute(0, 2, 3, 1))
                if i > 1:  # features and flow two steps back
                    feat_n2 = fetch(branch_feats[-2])
                    flow_n2 = fetch(flows[:, flow_idx[i - 1]])  # (n, 2, h, w)
                    flow_n2 = flow_n1 + flow_warp(flow_n2, flow_n1.permute(0, 2, 3, 1))
                    cond_n2 = fast_flow_warp(feat_n2, flow_n2.permute(0, 2, 3, 1))
                else:
                    feat_n2, flow_n2 = torch.zeros_like(feat_prop), torch.zeros_like(flow_n1)
                    cond_n2 = torch.zeros_like(cond_n1)
                cond = [cond_n1, feat_current, cond_n2]  # (n, 3c, h, w) once concatenated
                feat_prop = torch.cat([feat_prop, feat_n2], dim=1)  # (n, 2c, h, w)
                feat_prop = deform_align(feat_prop, cond, flow_n1, flow_n2)  # (n, c, h, w)
            # current, earlier-branch and propagated features: (n, (2 + #branches) c, h, w) once concatenated
            feat = [feat_current, *(fetch(feats[k][idx]) for k in other_branches), feat_prop]
            feat_prop = feat_prop + backbone(feat)
            if cpu_cache:
                branch_feats.append(feat_prop.cpu())
                torch.cuda.empty_cache()
            else:
                branch_feats.append(feat_prop)
        if "backward" in module_name:
            branch_feats.reverse()
        return feats

    def upsample(
        self, lqs: torch.Tensor, feats: dict[str, list[torch.Tensor]], cpu_cache: bool = False
    ) -> torch.Tensor:
        """``BasicVSRPlusPlus.upsample`` with each LeakyReLU fused and the last frame's outputs reused."""
        n, t, c, h, w = lqs.shape
        s = self.upscale_factor if self.is_low_res_input else 1
        out_device = torch.device("cpu") if cpu_cache else lqs.device
        outputs = torch.empty(n, t, c, s * h, s * w, dtype=lqs.dtype, device=out_device)
        branches = [k for k in feats if k != "spatial"]
        slope = self.lrelu.negative_slope
        spent: dict[str, torch.Tensor] = {}  # this frame's intermediates, reused as the next frame's buffers
        for i in range(t):
            hr = [feats["spatial"][i]]
            for k in branches:
                hr.append(feats[k][i])
                feats[k][i] = None  # release the branch feature once it is used
            if cpu_cache:
                hr = [f.to(lqs.device) for f in hr]
            hr = self.reconstruction(hr)  # (n, c, h', w') from the (n, 5c, h', w') concatenation
            hr = spent["up1"] = self.upsample1.forward_act(hr, "lrelu", slope, out=spent.get("up1"))
            if self.upscale_factor == 4:  # (n, 64, 4h', 4w')
                hr = spent["up2"] = self.upsample2.forward_act(hr, "lrelu", slope, out=spent.get("up2"))
            hr = spent["hr"] = self.conv_hr.forward_fused(hr, "lrelu", slope, out=spent.get("hr"))
            skip = self.img_upsample(lqs[:, i]) if self.is_low_res_input else lqs[:, i]
            outputs[:, i] = self.conv_last.forward_fused(hr, residual=skip)  # (n, 3, s*h, s*w)
            if cpu_cache:
                torch.cuda.empty_cache()
        return outputs


# plain class -> backend class; the swap keeps every parameter, buffer and state dict key
SWAPS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: Conv2d,
    nn.Upsample: ThreadPinnedUpsample,
    ResidualBlockNoBN: FusedResidualBlockNoBN,
    ResidualBlocksWithInputConv: FusedResidualBlocksWithInputConv,
    PixelShufflePack: FusedPixelShufflePack,
    SPyNet: FastSPyNet,
    SecondOrderDeformableAlignment: FusedSecondOrderDeformableAlignment,
    BasicVSRPlusPlus: FusedBasicVSRPlusPlus,
}
PLAIN = {fast: plain for plain, fast in SWAPS.items()}


def install(model: nn.Module, settings: BackendSettings) -> nn.Module:
    """Give every plain module of ``model`` its backend class and ``settings`` (in place); returns it."""
    for module in model.modules():
        cls = SWAPS.get(type(module)) or (type(module) if type(module) in PLAIN else None)
        if cls is None:
            continue
        module.__class__ = cls
        module.backend_settings = settings
        if isinstance(module, Conv2d):
            module.configure(settings.conv_impl, settings.winograd_tile)
    return model


def uninstall(model: nn.Module) -> nn.Module:
    """Put the plain classes back (in place); returns ``model``."""
    for module in model.modules():
        plain = PLAIN.get(type(module))
        if plain is None:
            continue
        module.__class__ = plain
        for name in ("backend_settings", "conv_impl", "winograd_tile"):
            module.__dict__.pop(name, None)
    return model


def installed_settings(model: nn.Module) -> BackendSettings | None:
    """The settings of the backend installed in ``model``, or None when it runs plain."""
    for module in model.modules():
        if type(module) in PLAIN and "backend_settings" in module.__dict__:
            return module.backend_settings
    return None
