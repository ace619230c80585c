"""Vimeo-90K x4, BI (MATLAB bicubic) degradation: train on the septuplets (7 frames mirrored to 14, 256 px
GT crops, flips and transposes), validate on Vid4 (all frames, Y-channel PSNR / SSIM).

Paths are config fields (``--cfg-options data_root=...`` sets every split; see ``data/README.md``).
"""

scale = 4
data_root = "data/vimeo90k"
ann_file = "meta_info_Vimeo90K_train_GT.txt"
lq_folder = "BIx4"
gt_folder = "GT"
val_data_root = "data/Vid4"
val_lq_folder = "BIx4"
val_gt_folder = "GT"

train_pipeline = [
    dict(type="LoadImageFromFile", key="lq"),
    dict(type="LoadImageFromFile", key="gt"),
    dict(type="PairedRandomCrop", gt_patch_size=256, scale=scale),
    dict(type="Flip", keys=["lq", "gt"], flip_ratio=0.5, direction="horizontal"),
    dict(type="Flip", keys=["lq", "gt"], flip_ratio=0.5, direction="vertical"),
    dict(type="RandomTransposeHW", keys=["lq", "gt"], transpose_ratio=0.5),
    dict(type="MirrorSequence", keys=["lq", "gt"]),
    dict(type="PackInputs"),
]
val_pipeline = [
    dict(type="GenerateSegmentIndices", interval_list=[1], random_start=False),
    dict(type="LoadImageFromFile", key="lq"),
    dict(type="LoadImageFromFile", key="gt"),
    dict(type="PackInputs", scale=scale),
]

train_dataloader = dict(
    batch_size=2,  # per GPU; the official run used 4 GPUs
    num_workers=6,
    persistent_workers=True,
    collate_fn=dict(type="default_collate"),
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type="Vimeo90KMultipleGTDataset",
        data_root=data_root,
        ann_file=ann_file,
        lq_folder=lq_folder,
        gt_folder=gt_folder,
        num_input_frames=7,
        scale=scale,
        test_mode=False,
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
        type="SRFolderMultipleGTDataset",
        data_root=val_data_root,
        lq_folder=val_lq_folder,
        gt_folder=val_gt_folder,
        scale=scale,
        test_mode=True,
        pipeline=val_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = [
    dict(type="PSNR", crop_border=0, convert_to="y"),
    dict(type="SSIM", crop_border=0, convert_to="y"),
]
test_evaluator = val_evaluator
