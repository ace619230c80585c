"""Custom operators: the modulated deformable convolution (DCNv2) that BasicVSR++ aligns with."""

from .modulated_deform_conv import IMPLS, ModulatedDeformConv2d, modulated_deform_conv2d, resolve_impl

__all__ = ["IMPLS", "ModulatedDeformConv2d", "modulated_deform_conv2d", "resolve_impl"]
