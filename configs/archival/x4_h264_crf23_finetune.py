"""x4 bicubic downscale, H.264 CRF 23; BasicVSR++ c64n7 fine-tuned from the REDS4 weights, fp16 delta."""

_base_ = ["./_base_/archival_default.py"]

codec = dict(scale=4, codec="libx264", crf=23, preset="medium")
model = dict(generator=dict(upscale_factor=4))
finetune = dict(enabled=True, max_iters=2000, max_seconds=3600.0, patch_size=256, clip_length=15)
storage = dict(mode="delta", dtype="fp16", compression="lzma")
