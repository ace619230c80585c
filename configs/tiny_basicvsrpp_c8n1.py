"""A tiny BasicVSR++ (mid_channels=8, num_blocks=1) for the quick start and fast tests; no trained weights."""

_base_ = ["./_base_/basicvsr_plusplus_c64n7.py"]

model = dict(generator=dict(mid_channels=8, num_blocks=1))
