"""BasicVSR++ (Chan et al., CVPR 2022): second-order grid propagation with flow-guided deformable alignment.

Numerically equivalent to MMEditing's ``BasicVSRPlusPlus`` (same parameter names and shapes, so
official checkpoints load strictly), with these differences that do not change the result:

* the deformable alignment modules always exist (the official code skips them without CUDA);
* per-call state (``cpu_cache``, mirror-extension flag) is kept in local variables, not on ``self``;
* frames smaller than the official minimum are reflect-padded (bottom/right) and the output cropped;
* ``upscale_factor=2`` gives a x2 variant (one pixel-shuffle stage ``upsample1``, x2 bilinear skip).

Plain PyTorch modules only: the fast CPU inference path (fused kernels, buffer reuse) is applied
on purpose from outside, by ``models/backends`` (``init_model(..., backend=...)``), with the same
state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from basicvsr_archival.registry import MODELS

from .common import PixelShufflePack, ResidualBlocksWithInputConv, flow_warp, reflect_pad_to
from .ops.modulated_deform_conv import ModulatedDeformConv2d
from .spynet import SPyNet

PROPAGATION_ORDER = ("backward_1", "forward_1", "backward_2", "forward_2")
FLOW_ESTIMATORS = ("spynet", "none")


class SecondOrderDeformableAlignment(ModulatedDeformConv2d):
    """Flow-guided second-order deformable alignment (a modulated DCN whose offsets are flow residues).

    Args:
        *args: positional arguments of ``ModulatedDeformConv2d`` (in_channels, out_channels, kernel_size...).
        max_residue_magnitude: bound of the learned offset residue added to the optical flows.
        **kwargs: keyword arguments of ``ModulatedDeformConv2d`` (stride, padding, deform_groups, ...).

    Shapes (``c = out_channels``, BasicVSR++ uses ``in_channels = 2c`` and 16 deform groups):
        ``forward(x, extra_feat, flow_1, flow_2)``: ``x`` (b, 2c, h, w) = cat(feat_{i-1}, feat_{i-2}),
        ``extra_feat`` (b, 3c, h, w) = cat(warped feat_{i-1}, current feat, warped feat_{i-2}),
        ``flow_1``/``flow_2`` (b, 2, h, w) in pixels, channels (dx, dy) -> output (b, c, h, w).
        The first half of the deform groups is offset around ``flow_1``, the second half around ``flow_2``.
    """

    def __init__(self, *args, max_residue_magnitude: float = 10, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_residue_magnitude = max_residue_magnitude
        num_points = self.weight.shape[2] * self.weight.shape[3]
        self.conv_offset = nn.Sequential(
            nn.Conv2d(3 * self.out_channels + 4, self.out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(self.out_channels, self.out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(self.out_channels, self.out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            # (dy, dx) offsets and a mask value per deform group and kernel point
            nn.Conv2d(self.out_channels, 3 * num_points * self.deform_groups, 3, 1, 1),
        )
        self.init_offset()

    def init_offset(self) -> None:
        """Zero-initialise the last offset layer so that alignment starts as pure flow warping."""
        nn.init.zeros_(self.conv_offset[-1].weight)
        nn.init.zeros_(self.conv_offset[-1].bias)

    def forward(
        self, x: torch.Tensor, extra_feat: torch.Tensor, flow_1: torch.Tensor, flow_2: torch.Tensor
    ) -> torch.Tensor:
        """Align ``x`` (b, 2c, h, w) guided by ``extra_feat`` (b, 3c, h, w) and two flows (b, 2, h, w)."""
        out = self.conv_offset(torch.cat([extra_feat, flow_1, flow_2], dim=1))  # (b, 3 * g * k, h, w)
        offset, mask = self.offset_and_mask(out, flow_1, flow_2)
        return super().forward(x, offset, mask)  # DCNv2 (Zhu et al., CVPR 2019, eq. 3)

    def offset_and_mask(
        self, out: torch.Tensor, flow_1: torch.Tensor, flow_2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DCN offsets (b, 2gk, h, w) and masks (b, gk, h, w) from the ``conv_offset`` output (b, 3gk, h, w).

        BasicVSR++ (Chan et al., CVPR 2022), Sec. 3.2: ``o = M * tanh(cat(o1, o2)) + cat(f1, f2)``
        (each flow repeated for its half of the deform groups and kernel points) and
        ``m = sigmoid(m)``, with ``M = max_residue_magnitude``.
        """
        n, _, h, w = out.shape
        c_off = out.size(1) // 3  # = g * k: one third for o1, o2 and the mask each
        offset = self.max_residue_magnitude * torch.tanh(out[:, : 2 * c_off])  # (b, 2 * g * k, h, w)
        # add flow_1 (flipped to (dy, dx)) to every point of the first half, flow_2 to the second half
        offset = offset.reshape(n, 2, c_off // 2, 2, h, w)  # (b, half, g/2 * k, (dy, dx), h, w)
        flows = torch.stack([flow_1.flip(1), flow_2.flip(1)], dim=1)  # (b, half, (dy, dx), h, w)
        offset = offset + flows.unsqueeze(2)  # (b, half, g/2 * k, (dy, dx), h, w)
        offset = offset.view(n, 2 * c_off, h, w)  # (b, 2 * g * k, h, w), mmcv layout
        mask = torch.sigmoid(out[:, 2 * c_off :])  # (b, g * k, h, w)
        return offset, mask


@MODELS.register_module()
class BasicVSRPlusPlus(nn.Module):
    """BasicVSR++ video super-resolution network.

    Args:
        mid_channels: channels of the propagated features (official: 64).
        num_blocks: residual blocks in each propagation branch (official: 7).
        max_residue_magnitude: bound of the deformable offset residue around the flow (official: 10).
        is_low_res_input: ``True`` for super-resolution (output ``upscale_factor`` x larger); ``False``
            for same-size restoration (features extracted at 1/4 resolution by two strided convs,
            flows computed on a bicubic 1/4 downsample, output the input size, residual on the input).
        spynet_pretrained: optional local path of a SPyNet checkpoint (never downloaded).
        cpu_cache_length: when the input is on CUDA and has more than this many frames, the
            features are kept on the CPU and moved to the GPU one step at a time.
        upscale_factor: 4 (official: two x2 pixel-shuffle stages ``upsample1``/``upsample2`` and a
            x4 bilinear skip) or 2 (one stage ``upsample1`` and a x2 bilinear skip). Must be 4 when
            ``is_low_res_input`` is ``False``.
        flow_estimator: ``'spynet'`` (official: SPyNet flows guide the alignment) or ``'none'``: no
            motion estimation, every flow is zero and the alignment relies on its learned offsets
            only (no ``spynet`` module or state dict keys; the output equals that of a SPyNet that
            predicts zero flow, e.g. one whose last convolutions are zero, at none of its cost).

    Shapes: ``forward(lqs)`` takes ``lqs`` (n, t, 3, h, w), RGB in [0, 1], and returns
    (n, t, 3, s*h, s*w) with ``s = upscale_factor`` (``s = 1`` in same-size mode). Frames smaller than
    64 px (256 px in same-size mode) are reflect-padded at the bottom/right and the output cropped.
    """

    def __init__(
        self,
        mid_channels: int = 64,
        num_blocks: int = 7,
        max_residue_magnitude: float = 10,
        is_low_res_input: bool = True,
        spynet_pretrained: str | None = None,
        cpu_cache_length: int = 100,
        upscale_factor: int = 4,
        flow_estimator: str = "spynet",
    ) -> None:
        super().__init__()
        if upscale_factor not in (2, 4):
            raise ValueError(f"upscale_factor must be 2 or 4, got {upscale_factor}.")
        if not is_low_res_input and upscale_factor != 4:
            raise ValueError("same-size mode (is_low_res_input=False) requires upscale_factor=4.")
        if flow_estimator not in FLOW_ESTIMATORS:
            raise ValueError(f"flow_estimator must be one of {FLOW_ESTIMATORS}, got {flow_estimator!r}.")
        if flow_estimator == "none" and spynet_pretrained is not None:
            raise ValueError("spynet_pretrained needs flow_estimator='spynet'.")
        self.mid_channels = mid_channels
        self.is_low_res_input = is_low_res_input
        self.cpu_cache_length = cpu_cache_length
        self.upscale_factor = upscale_factor
        self.flow_estimator = flow_estimator

        # optical flow (none: zero flows)
        self.spynet = SPyNet(pretrained=spynet_pretrained) if flow_estimator == "spynet" else None

        # feature extraction
        if is_low_res_input:
            self.feat_extract = ResidualBlocksWithInputConv(3, mid_channels, 5)
        else:
            self.feat_extract = nn.Sequential(
                nn.Conv2d(3, mid_channels, 3, 2, 1),
                nn.LeakyReLU(negative_slope=0.1, inplace=True),
                nn.Conv2d(mid_channels, mid_channels, 3, 2, 1),
                nn.LeakyReLU(negative_slope=0.1, inplace=True),
                ResidualBlocksWithInputConv(mid_channels, mid_channels, 5),
            )

        # propagation branches
        self.deform_align = nn.ModuleDict()
        self.backbone = nn.ModuleDict()
        for i, module in enumerate(PROPAGATION_ORDER):
            self.deform_align[module] = SecondOrderDeformableAlignment(
                2 * mid_channels,
                mid_channels,
                3,
                padding=1,
                deform_groups=16,
                max_residue_magnitude=max_residue_magnitude,
            )
            self.backbone[module] = ResidualBlocksWithInputConv(
                (2 + i) * mid_channels, mid_channels, num_blocks
            )

        # reconstruction and upsampling
        self.reconstruction = ResidualBlocksWithInputConv(5 * mid_channels, mid_channels, 5)
        if upscale_factor == 4:
            self.upsample1 = PixelShufflePack(mid_channels, mid_channels, 2, upsample_kernel=3)
            self.upsample2 = PixelShufflePack(mid_channels, 64, 2, upsample_kernel=3)
        else:
            self.upsample1 = PixelShufflePack(mid_channels, 64, 2, upsample_kernel=3)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        self.img_upsample = nn.Upsample(scale_factor=upscale_factor, mode="bilinear", align_corners=False)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)

    @staticmethod
    def check_if_mirror_extended(lqs: torch.Tensor) -> bool:
        """Whether ``lqs`` (n, t, c, h, w) is mirror-extended (second half = reversed first half)."""
        if lqs.size(1) % 2 != 0:
            return False
        lqs_1, lqs_2 = torch.chunk(lqs, 2, dim=1)  # 2 x (n, t/2, c, h, w)
        return bool(torch.equal(lqs_1, lqs_2.flip(1)))

    def compute_flow(
        self, lqs: torch.Tensor, is_mirror_extended: bool = False, cpu_cache: bool = False
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """SPyNet flows between neighbours of ``lqs`` (n, t, c, h, w): (forward or None, backward).

        Both are (n, t-1, 2, h, w); all zeros with ``flow_estimator='none'``.

        ``flows_backward[:, i]`` warps frame i+1 onto frame i, ``flows_forward[:, i]`` frame i onto
        frame i+1. The forward flows are skipped (None) for mirror-extended sequences: they equal the
        flipped backward ones.
        """
        n, t, c, h, w = lqs.size()
        if t < 2:
            empty = lqs.new_zeros(n, 0, 2, h, w)
            return (None if is_mirror_extended else empty), empty
        if self.spynet is None:  # no motion estimation
            zeros = lqs.new_zeros(n, t - 1, 2, h, w, device="cpu" if cpu_cache else lqs.device)
            return (None if is_mirror_extended else zeros), zeros
        lqs_1 = lqs[:, :-1].reshape(-1, c, h, w)  # (n * (t-1), c, h, w)
        lqs_2 = lqs[:, 1:].reshape(-1, c, h, w)  # (n * (t-1), c, h, w)
        flows_backward = self.spynet(lqs_1, lqs_2).view(n, t - 1, 2, h, w)
        flows_forward = None if is_mirror_extended else self.spynet(lqs_2, lqs_1).view(n, t - 1, 2, h, w)
        if cpu_cache:
            flows_backward = flows_backward.cpu()
            flows_forward = flows_forward.cpu() if flows_forward is not None else None
        return flows_forward, flows_backward

    def propagate(
        self,
        feats: dict[str, list[torch.Tensor]],
        flows: torch.Tensor,
        module_name: str,
        cpu_cache: bool = False,
        device: torch.device | None = None,
    ) -> dict[str, list[torch.Tensor]]:
        """Run one propagation branch over all frames, appending its features to ``feats[module_name]``.

        ``feats`` maps 'spatial' and the earlier branches to per-frame lists of (n, c, h, w) features,
        ``flows`` is (n, t-1, 2, h, w) in the direction of the branch. With ``cpu_cache`` the stored
        features live on the CPU and are moved to ``device`` for each step.
        """
        n, t_flow, _, h, w = flows.size()
        device = flows.device if device is None else device
        num_frames = t_flow + 1
        frame_idx = list(range(num_frames))
        flow_idx = list(range(-1, num_frames - 1))
        if "backward" in module_name:
            frame_idx = frame_idx[::-1]
            flow_idx = frame_idx
        other_branches = [k for k in feats if k not in ("spatial", module_name)]
        deform_align = self.deform_align[module_name]
        backbone = self.backbone[module_name]
        branch_feats = feats[module_name]

        feat_prop = torch.zeros(n, self.mid_channels, h, w, dtype=flows.dtype, device=device)
        for i, idx in enumerate(frame_idx):
            feat_current = feats["spatial"][idx]
            if cpu_cache:
                feat_current = feat_current.to(device)
            # second-order deformable alignment
            if i > 0:
                flow_n1 = flows[:, flow_idx[i]]  # (n, 2, h, w)
                if cpu_cache:
                    flow_n1 = flow_n1.to(device)
                cond_n1 = flow_warp(feat_prop, flow_n1.permute(0, 2, 3, 1))  # flow as (n, h, w, 2)

                if i > 1:  # features and flow two steps back
                    feat_n2 = branch_feats[-2]
                    flow_n2 = flows[:, flow_idx[i - 1]]  # (n, 2, h, w)
                    if cpu_cache:
                        feat_n2 = feat_n2.to(device)
                        flow_n2 = flow_n2.to(device)
                    flow_n2 = flow_n1 + flow_warp(flow_n2, flow_n1.permute(0, 2, 3, 1))
                    cond_n2 = flow_warp(feat_n2, flow_n2.permute(0, 2, 3, 1))
                else:
                    feat_n2 = torch.zeros_like(feat_prop)
                    flow_n2 = torch.zeros_like(flow_n1)
                    cond_n2 = torch.zeros_like(cond_n1)

                cond = torch.cat([cond_n1, feat_current, cond_n2], dim=1)  # (n, 3c, h, w)
                feat_prop = torch.cat([feat_prop, feat_n2], dim=1)  # (n, 2c, h, w)
                feat_prop = deform_align(feat_prop, cond, flow_n1, flow_n2)  # (n, c, h, w)

            # concatenate the current, earlier-branch and propagated features: (n, (2 + #branches) c, h, w)
            feat = [feat_current]
            for k in other_branches:
                feat.append(feats[k][idx].to(device) if cpu_cache else feats[k][idx])
            feat.append(feat_prop)
            feat_prop = feat_prop + backbone(torch.cat(feat, dim=1))
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
        """Reconstruct the output (n, t, 3, s*h, s*w) from the input ``lqs`` (n, t, 3, h, w) and all branches.

        The branch feature lists are emptied (set to None) frame by frame to free memory.
        """
        n, t, c, h, w = lqs.shape
        s = self.upscale_factor if self.is_low_res_input else 1
        out_device = torch.device("cpu") if cpu_cache else lqs.device
        outputs = torch.empty(n, t, c, s * h, s * w, dtype=lqs.dtype, device=out_device)
        branches = [k for k in feats if k != "spatial"]
        for i in range(t):
            hr = [feats["spatial"][i]]
            for k in branches:
                hr.append(feats[k][i])
                feats[k][i] = None  # release the branch feature once it is used
            hr = torch.cat(hr, dim=1)  # (n, 5c, h', w')
            if cpu_cache:
                hr = hr.to(lqs.device)
            hr = self.reconstruction(hr)  # (n, c, h', w')
            hr = self.lrelu(self.upsample1(hr))  # (n, c|64, 2h', 2w')
            if self.upscale_factor == 4:
                hr = self.lrelu(self.upsample2(hr))  # (n, 64, 4h', 4w')
            hr = self.lrelu(self.conv_hr(hr))
            hr = self.conv_last(hr)  # (n, 3, s*h, s*w)
            hr += self.img_upsample(lqs[:, i]) if self.is_low_res_input else lqs[:, i]
            outputs[:, i] = hr
            if cpu_cache:
                torch.cuda.empty_cache()
        return outputs

    def forward(self, lqs: torch.Tensor) -> torch.Tensor:
        """Super-resolve ``lqs`` (n, t, 3, h, w) in [0, 1] to (n, t, 3, s*h, s*w)."""
        if lqs.dim() != 5:
            raise ValueError(f"expected lqs of shape (n, t, c, h, w), got {tuple(lqs.shape)}")
        n, t, c, h, w = lqs.size()
        # the official network needs flow inputs of at least 64x64 (1/4 size in same-size mode)
        if self.is_low_res_input:
            min_size, multiple, s = 64, 1, self.upscale_factor
        else:
            min_size, multiple, s = 256, 4, 1
        # (n, t, c, h, w) -> (n*t, c, h_p, w_p)
        lqs_pad = reflect_pad_to(lqs.reshape(n * t, c, h, w), min_size, min_size, multiple)
        padded = lqs_pad.shape[-2:] != (h, w)
        # (n*t, c, h_p, w_p) -> (n, t, c, h_p, w_p)
        lqs_pad = lqs_pad.view(n, t, c, *lqs_pad.shape[-2:]) if padded else lqs
        # cache the features on the CPU for long sequences on a GPU (no effect on CPU)
        cpu_cache = t > self.cpu_cache_length and lqs.is_cuda
        out = self._forward_padded(lqs_pad, cpu_cache)
        if padded:
            out = out[..., : s * h, : s * w].contiguous()  # crop back: (n, t, c, s*h, s*w)
        return out

    def _forward_padded(self, lqs: torch.Tensor, cpu_cache: bool = False) -> torch.Tensor:
        """Official BasicVSR++ forward on ``lqs`` (n, t, c, h, w) whose size is valid for the network."""
        n, t, c, h, w = lqs.size()
        device = lqs.device

        if self.is_low_res_input:
            lqs_downsample = lqs
        else:
            lqs_downsample = F.interpolate(lqs.reshape(-1, c, h, w), scale_factor=0.25, mode="bicubic")
            lqs_downsample = lqs_downsample.view(n, t, c, h // 4, w // 4)  # (n, t, c, h/4, w/4)

        is_mirror_extended = self.check_if_mirror_extended(lqs)

        # spatial features, one (n, mid, h', w') tensor per frame
        feats: dict[str, list[torch.Tensor]] = {}
        if cpu_cache:
            feats["spatial"] = []
            for i in range(t):
                feats["spatial"].append(self.feat_extract(lqs[:, i]).cpu())
                torch.cuda.empty_cache()
        else:
            feats_ = self.feat_extract(lqs.reshape(-1, c, h, w))  # (n*t, mid, h', w')
            feats_ = feats_.view(n, t, *feats_.shape[1:])  # (n, t, mid, h', w')
            feats["spatial"] = [feats_[:, i] for i in range(t)]

        flows_forward, flows_backward = self.compute_flow(lqs_downsample, is_mirror_extended, cpu_cache)

        # second-order grid propagation: backward_1, forward_1, backward_2, forward_2
        for module in PROPAGATION_ORDER:
            feats[module] = []
            if module.startswith("backward"):
                flows = flows_backward
            elif flows_forward is not None:
                flows = flows_forward
            else:
                flows = flows_backward.flip(1)
            feats = self.propagate(feats, flows, module, cpu_cache=cpu_cache, device=device)
            if cpu_cache:
                del flows
                torch.cuda.empty_cache()

        return self.upsample(lqs, feats, cpu_cache)
