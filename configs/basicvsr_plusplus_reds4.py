"""BasicVSR++ x4 on REDS4: the model of `basicvsr_plusplus_c64n7_8x1_600k_reds4_20210217-db622b2f.pth`.

Model (from the base) plus the official training recipe: 8 GPUs x batch 1, 600k iterations, 30-frame
clips with 256 px GT crops, REDS4 validation (clips 000, 011, 015, 020, RGB PSNR / SSIM). Dataset
paths: ``--cfg-options data_root=... lq_folder=... gt_folder=...`` (propagated to every split).
"""

_base_ = ["./_base_/basicvsr_plusplus_c64n7.py"]

# ----------------------------------------------------------------------------- training recipe
import importlib.util  # noqa: E402  (config: only to decide on the TensorBoard backend)

custom_imports = dict(imports=["basicvsr_archival.engine"], allow_failed_imports=False)

scale = 4  # as in the base model config
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

train_cfg = dict(type="IterBasedTrainLoop", max_iters=600_000, val_interval=5000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="Adam", lr=1e-4, betas=(0.9, 0.99)),
    paramwise_cfg=dict(custom_keys={"spynet": dict(lr_mult=0.25)}),
)
param_scheduler = dict(
    type="CosineRestartLR", by_epoch=False, periods=[600_000], restart_weights=[1], eta_min=1e-7
)

# SPyNet is fixed for model.train_cfg.fix_iter iterations: the restorer's own train_step must run (the
# separate wrapper calls it) and DDP must tolerate parameters without gradients.
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
