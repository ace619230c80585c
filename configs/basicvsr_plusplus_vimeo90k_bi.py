"""BasicVSR++ x4 on Vimeo-90K (BI degradation), the official recipe; validation on Vid4 (Y channel).

4 GPUs x batch 2, 300k iterations, 7-frame septuplets mirrored to 14 frames, 256 px GT crops, flips and
transposes; SPyNet fixed for 5000 iterations. Paths are config fields (``--cfg-options data_root=...``
sets every split; see ``data/README.md`` for the layouts).
"""

_base_ = ["./_base_/basicvsr_plusplus_c64n7.py"]

import importlib.util  # noqa: E402  (config: only to decide on the TensorBoard backend)

custom_imports = dict(imports=["basicvsr_archival.engine"], allow_failed_imports=False)

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

train_cfg = dict(type="IterBasedTrainLoop", max_iters=300_000, val_interval=5000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="Adam", lr=1e-4, betas=(0.9, 0.99)),
    paramwise_cfg=dict(custom_keys={"spynet": dict(lr_mult=0.25)}),
)
param_scheduler = dict(
    type="CosineRestartLR", by_epoch=False, periods=[300_000], restart_weights=[1], eta_min=1e-7
)
model_wrapper_cfg = dict(type="CPUCompatibleSeparateDDP", find_unused_parameters=True)

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=100),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(
        type="CheckpointHook",
        interval=5000,
        by_epoch=False,
        save_optimizer=True,
        save_best="PSNR",
        rule="greater",
        max_keep_ckpts=10,
    ),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
# checkpoints stay loadable with torch.load(weights_only=True) (engine/hooks.py)
custom_hooks = [dict(type="SafeCheckpointHook")]
log_processor = dict(type="LogProcessor", window_size=100, by_epoch=False)
vis_backends = [dict(type="LocalVisBackend")]
if importlib.util.find_spec("tensorboard") is not None:
    vis_backends.append(dict(type="TensorboardVisBackend"))
visualizer = dict(type="Visualizer", vis_backends=vis_backends)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
randomness = dict(seed=0, diff_rank_seed=True)
log_level = "INFO"
load_from = None
resume = False
