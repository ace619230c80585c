"""Tiny settings for CI and quick checks: c8n1 BasicVSR++ x2, H.264 CRF 23, a few CPU iterations.

No base checkpoint (from scratch: zero-flow SPyNet; the tensors fine-tuning changed are stored, the
frozen ones by reference to their seeded initialisation) unless ``base_checkpoint`` is given, e.g.
``--cfg-options base_checkpoint=path/to/tiny_base.pth`` (then an int8 delta is stored).
Recipe tuned for learning fast on a CPU: 2-frame clips, 128 px GT patches, MSE loss, Adam 2e-3;
SPyNet and the deformable alignment stay frozen (85k of the 1.67M parameters are trained).
"""

_base_ = ["./_base_/archival_default.py"]

codec = dict(scale=2, codec="libx264", crf=23, preset="medium")
model = dict(
    generator=dict(mid_channels=8, num_blocks=1, upscale_factor=2),
    pixel_loss=dict(_delete_=True, type="MSELoss", loss_weight=1.0, reduction="mean"),
)
base_checkpoint = None
finetune = dict(
    max_iters=20,
    max_seconds=120.0,
    clip_length=2,
    patch_size=128,
    lr=2e-3,
    lr_schedule="constant",
    num_workers=0,
    frozen=("spynet", "deform_align"),
    eval_frames=0,
    checkpoint_interval=10,
    log_interval=1,
)
storage = dict(mode="auto", dtype="int8", compression="lzma")
restore = dict(device="cpu", precision="fp32", max_seq_len=8)
