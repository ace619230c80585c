"""REDS x4 (bicubic): train on REDS minus REDS4 (30-frame clips, 256 px GT crops, flips and transposes),
validate on REDS4 (clips 000, 011, 015, 020, all 100 frames, RGB PSNR / SSIM).

Paths: ``--cfg-options data_root=... lq_folder=... gt_folder=...`` (propagated to every split).
"""

scale = 4
data_root = "data/REDS"
lq_folder = "train_sharp_bicubic/X4"
gt_folder = "train_sharp"

train_pipeline = [
    dict(type="GenerateSegmentIndices", interval_list=[1]),
    dict(type="LoadImageFromFile", key="lq"),
    dict(type="LoadImageFromFile", key="gt"),
    dict(type="PairedRandomCrop", gt_patch_size=256, scale=scale),
    dict(type="Flip", keys=["lq", "gt"], flip_ratio=0.5, direction="horizontal"),
    dict(type="Flip", keys=["lq", "gt"], flip_ratio=0.5, direction="vertical"),
    dict(type="RandomTransposeHW", keys=["lq", "gt"], transpose_ratio=0.5),
    dict(type="PackInputs"),
]
test_pipeline = [
    dict(type="GenerateSegmentIndices", interval_list=[1], random_start=False),
    dict(type="LoadImageFromFile", key="lq"),
    dict(type="LoadImageFromFile", key="gt"),
    dict(type="PackInputs", scale=scale),
]

train_dataloader = dict(
    batch_size=1,  # per GPU; the official run used 8 GPUs
    num_workers=6,
    persistent_workers=True,
    collate_fn=dict(type="default_collate"),
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type="REDSMultipleGTDataset",
        data_root=data_root,
        lq_folder=lq_folder,
        gt_folder=gt_folder,
        num_input_frames=30,
        val_partition="REDS4",
        test_mode=False,
        scale=scale,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=False,
    collate_fn=dict(type="default_collate"),
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="REDSMultipleGTDataset",
        data_root=data_root,
        lq_folder=lq_folder,
        gt_folder=gt_folder,
        num_input_frames=100,
        val_partition="REDS4",
        test_mode=True,
        scale=scale,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [dict(type="PSNR", crop_border=0), dict(type="SSIM", crop_border=0)]
test_evaluator = val_evaluator
