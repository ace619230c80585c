"""The official Vimeo-90K schedule: the REDS one (``adam_cosine_600k.py``) over 300k iterations."""

_base_ = ["./adam_cosine_600k.py"]

train_cfg = dict(max_iters=300_000)
param_scheduler = dict(periods=[300_000])
