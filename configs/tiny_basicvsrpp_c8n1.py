"""A tiny BasicVSR++ (mid_channels=8, num_blocks=1) for the quick start and fast tests; no trained weights."""

_base_ = ["./_base_/models/basicvsr_plusplus_c64n7.py"]

default_scope = "basicvsr_archival"
scale = 4  # the model's upscale factor
model = dict(generator=dict(mid_channels=8, num_blocks=1))
