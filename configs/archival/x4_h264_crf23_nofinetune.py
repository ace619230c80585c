"""x4 H.264 CRF 23 with the REDS4 BasicVSR++ weights as they are: the archive only references the base.

With fine-tuning off the delta is all zeros, so the model member holds no tensors (a few hundred
bytes) and restoring needs the base checkpoint, found by its SHA-256.
"""

_base_ = ["./x4_h264_crf23_finetune.py"]

finetune = dict(enabled=False, eval_frames=0)
storage = dict(mode="delta")
