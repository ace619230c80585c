"""Tiny study for CI and quick checks: tiny_ci's c8n1 x2 model, two CRFs, two fine-tuning iterations, CPU.

The ``sr_base`` option needs a base model: ``--cfg-options base_checkpoint=PATH``, or
``study.base_pretrain.video=PATH`` (another clip: a base is trained on it from scratch, once per
scale, with ``study.base_pretrain.finetune``). See ``study_default.py`` for every setting.
"""

_base_ = ["./tiny_ci.py"]

finetune = dict(max_iters=2, max_seconds=60.0, patch_size=64, clip_length=2, checkpoint_interval=10)

study = dict(
    scales=[2],
    crfs=[23, 33],
    variants=["full", "bicubic", "sr_base", "sr_finetuned"],
    vmaf=True,
    crop_multiple=None,
    keep_videos=False,
    bd_method="pchip",
    base_pretrain=dict(video=None, crf=None, finetune=dict(max_iters=2)),
)

tco = dict(
    horizon_days=365.0,
    cluster_size=1,
    model_shared_by=None,
    original_crf=23,
    scale=None,
    match="crf",
    match_tolerance=0.0,
    interval_days=(1.0, 3650.0, 41),
    cpu_usd_per_hour=0.085,
)

cost = dict(
    tiers={"Frequent": [0.021, 0.0], "Infrequent": [0.0125, 0.01], "Archive": [0.004, 0.03]},
    gpu_usd_per_hour=0.302,
    gb="SI",
    days_per_month=30.0,
)
