"""Vimeo-90K x4, BD degradation (Gaussian blur sigma 1.6, then x4 subsampling): ``vimeo90k_bi.py``
with the BD frames; validation on Vid4-BD."""

_base_ = ["./vimeo90k_bi.py"]

lq_folder = "BDx4"
val_lq_folder = "BDx4"
train_dataloader = dict(dataset=dict(lq_folder=lq_folder))
val_dataloader = dict(dataset=dict(lq_folder=val_lq_folder))
test_dataloader = val_dataloader
