"""BasicVSR++ (mid_channels=64, num_blocks=7), x4: the model of the official REDS4 x4 checkpoint.

The restorer (generator + Charbonnier pixel loss), SPyNet fixed for the first 5000 training iterations
as in the official recipe, PSNR / SSIM for evaluation code.
"""

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
