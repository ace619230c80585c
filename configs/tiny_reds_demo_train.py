"""Tiny CPU training run for tests and smoke checks: c8n1 BasicVSR++ on one real clip, a few iterations.

GT = the frames in ``gt_folder`` (default: the 21 REDS demo frames in ``../shared``), LR = their x4
MATLAB-bicubic downscale made on the fly; frames 0-15 train (3-frame clips, 64 px GT crops), the last
5 frames validate. Override paths with ``--cfg-options gt_folder=/abs/frames``.
"""

_base_ = [
    "./_base_/models/basicvsr_plusplus_c64n7.py",
    "./_base_/schedules/adam_cosine_600k.py",
    "./_base_/default_runtime.py",
]

scale = 4
gt_folder = "../shared/data/reds_demo_000"
max_iters = 4

model = dict(
    generator=dict(mid_channels=8, num_blocks=1), train_cfg=dict(fix_iter=5)
)  # resuming 4 -> 6 crosses the unfreeze

train_pipeline = [
    dict(type="GenerateSegmentIndices", interval_list=[1]),
    dict(type="LoadImageFromFile", key="gt"),
    dict(type="Degrade", scale=scale, degradation="BI"),
    dict(type="PairedRandomCrop", gt_patch_size=64, scale=scale),
    dict(type="Flip", keys=["lq", "gt"], flip_ratio=0.5, direction="horizontal"),
    dict(type="Flip", keys=["lq", "gt"], flip_ratio=0.5, direction="vertical"),
    dict(type="RandomTransposeHW", keys=["lq", "gt"], transpose_ratio=0.5),
    dict(type="PackInputs"),
]
val_pipeline = [
    dict(type="GenerateSegmentIndices", interval_list=[1], random_start=False),
    dict(type="LoadImageFromFile", key="gt"),
    dict(type="Degrade", scale=scale, degradation="BI"),
    dict(type="PackInputs", scale=scale),
]

train_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    collate_fn=dict(type="default_collate"),
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type="VideoClipsDataset",
        gt_folder=gt_folder,
        lq_folder=None,
        clip_length=8,
        num_input_frames=3,
        num_val_frames=5,
        scale=scale,
        test_mode=False,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    collate_fn=dict(type="default_collate"),
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="VideoClipsDataset",
        gt_folder=gt_folder,
        lq_folder=None,
        clip_length=8,
        num_val_frames=5,
        scale=scale,
        test_mode=True,
        pipeline=val_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [dict(type="PSNR", crop_border=0), dict(type="SSIM", crop_border=0)]
test_evaluator = val_evaluator

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# the period is longer than any run of this config, so resuming with more iterations stays valid
param_scheduler = dict(periods=[1000])
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(  # every checkpoint is kept
        _delete_=True,
        type="CheckpointHook",
        interval=2,
        by_epoch=False,
        save_optimizer=True,
        save_best="PSNR",
        rule="greater",
    ),
)
log_processor = dict(window_size=1)
env_cfg = dict(dist_cfg=dict(backend="gloo"))
