"""Per-video fine-tuning of BasicVSR++ x4 on one long archival video (e.g. a recorded lecture).

The video's frames (``tools/data/extract_frames.py``) are cut into 30-frame clips; the last
``num_val_frames`` frames are held out for validation and never appear in a training clip. LR frames
come from ``lq_folder`` (paired LR/GT frames) or, with ``--cfg-options lq_folder=None``, from the GT by
on-the-fly MATLAB-bicubic x4 downscaling (the model then learns the video's content at the
degradation it was trained for). Starts from the official REDS4 weights (``load_from``).
"""

_base_ = [
    "./_base_/models/basicvsr_plusplus_c64n7.py",
    "./_base_/schedules/adam_cosine_600k.py",
    "./_base_/default_runtime.py",
]

scale = 4
data_root = "data/lectures/lecture01"
gt_folder = "GT"
lq_folder = "LR"
clip_length = 30
num_val_frames = 10
max_iters = 5000

# SPyNet comes pretrained with the REDS4 weights: keep it fixed for the first fifth of the run
model = dict(train_cfg=dict(fix_iter=1000))
load_from = "chkpts/basicvsr_plusplus_reds4.pth"  # see chkpts/README.md

train_pipeline = [
    dict(type="GenerateSegmentIndices", interval_list=[1]),
    dict(type="LoadImageFromFile", key="gt"),
    dict(type="LoadImageFromFile", key="lq", allow_missing=True),
    dict(type="Degrade", scale=scale, degradation="BI", keep_existing=True),
    dict(type="PairedRandomCrop", gt_patch_size=256, scale=scale),
    dict(type="Flip", keys=["lq", "gt"], flip_ratio=0.5, direction="horizontal"),
    dict(type="Flip", keys=["lq", "gt"], flip_ratio=0.5, direction="vertical"),
    dict(type="RandomTransposeHW", keys=["lq", "gt"], transpose_ratio=0.5),
    dict(type="PackInputs"),
]
val_pipeline = [
    dict(type="GenerateSegmentIndices", interval_list=[1], random_start=False),
    dict(type="LoadImageFromFile", key="gt"),
    dict(type="LoadImageFromFile", key="lq", allow_missing=True),
    dict(type="Degrade", scale=scale, degradation="BI", keep_existing=True),
    dict(type="PackInputs", scale=scale),
]

train_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    collate_fn=dict(type="default_collate"),
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type="VideoClipsDataset",
        data_root=data_root,
        gt_folder=gt_folder,
        lq_folder=lq_folder,
        clip_length=clip_length,
        num_input_frames=15,
        num_val_frames=num_val_frames,
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
        type="VideoClipsDataset",
        data_root=data_root,
        gt_folder=gt_folder,
        lq_folder=lq_folder,
        clip_length=clip_length,
        num_val_frames=num_val_frames,
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

train_cfg = dict(max_iters=max_iters, val_interval=500)
optim_wrapper = dict(optimizer=dict(lr=5e-5))
param_scheduler = dict(periods=[max_iters])
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=500, max_keep_ckpts=3))
log_processor = dict(window_size=50)
