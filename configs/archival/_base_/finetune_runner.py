"""The mmengine Runner recipe of the per-video fine-tuning (no validation loop).

``basicvsr_archival.archival.finetune_runner.runner_config`` loads this file and fills in the job:
the model, the LR/GT video pair and its crop / flip pipeline, ``work_dir``, the iterations, the
learning rate and its schedule, the batch size, workers, seed, intervals and the weights to start
or resume from (the ``finetune`` settings of the archival config). Frozen parameters are set on the
built model (``finetune_runner.freeze``), not here.
"""

default_scope = "basicvsr_archival"

train_dataloader = dict(
    collate_fn=dict(type="default_collate"),
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type="VideoFileDataset", test_mode=False),
)
train_cfg = dict(type="IterBasedTrainLoop")

optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="Adam", betas=(0.9, 0.99)))
# lr_schedule "cosine" (the job fills in T_max, eta_min and end); "constant" replaces it with None
param_scheduler = dict(type="CosineAnnealingLR", by_epoch=False, begin=0)

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook"),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(
        type="CheckpointHook", by_epoch=False, save_optimizer=True, max_keep_ckpts=2, save_last=True
    ),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
log_processor = dict(type="LogProcessor", by_epoch=False)
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="gloo"),
)
log_level = "ERROR"  # progress shows in the tqdm bar; scalars go to the work dir's vis_data
