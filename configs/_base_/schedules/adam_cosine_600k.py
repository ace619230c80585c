"""The official REDS schedule: 600k iterations, Adam 1e-4 (SPyNet x0.25), one cosine period to 1e-7."""

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
