"""BasicVSR++ (mid_channels=64, num_blocks=7): the model of the official REDS4 x4 checkpoint."""

default_scope = "basicvsr_archival"

scale = 4

model = dict(
    type="BasicVSR",
    generator=dict(
        type="BasicVSRPlusPlus",
        mid_channels=64,
        num_blocks=7,
        is_low_res_input=True,
        spynet_pretrained=None,
    ),
    pixel_loss=dict(type="CharbonnierLoss", loss_weight=1.0, reduction="mean"),
    train_cfg=dict(fix_iter=5000),
    test_cfg=dict(metrics=["PSNR", "SSIM"], crop_border=0),
)
