"""Runtime of the training configs: registry scope, hooks, logging, visualisation, environment, seed."""

import importlib.util  # config: only to decide on the TensorBoard backend

default_scope = "basicvsr_archival"
custom_imports = dict(imports=["basicvsr_archival.engine"], allow_failed_imports=False)

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
