"""x2 downscale, H.265 CRF 28; a x2 BasicVSR++ c64n7 started from the x4 REDS4 weights, fine-tuned.

The x2 network's tensors are a subset of the x4 one's (``upsample2`` is unused), hence
``base_allow_extra_keys``; the archive stores the int8 delta from those weights.
"""

_base_ = ["./_base_/archival_default.py"]

codec = dict(scale=2, codec="libx265", crf=28, preset="medium")
model = dict(generator=dict(upscale_factor=2))
base_allow_extra_keys = True
finetune = dict(enabled=True, max_iters=3000, max_seconds=3600.0, patch_size=192, clip_length=15)
storage = dict(mode="delta", dtype="int8", compression="lzma")
