"""BasicVSR++ c64n7 x4 on REDS, the official recipe: the model of the REDS4 checkpoint
(``chkpts/basicvsr_plusplus_reds4.pth``, see ``chkpts/README.md``).

8 GPUs x batch 1, 600k iterations, 30-frame clips with 256 px GT crops, REDS4 validation (clips 000,
011, 015, 020, RGB PSNR / SSIM). Dataset paths: ``--cfg-options data_root=... lq_folder=...
gt_folder=...`` (propagated to every split).
"""

_base_ = [
    "./_base_/models/basicvsr_plusplus_c64n7.py",
    "./_base_/datasets/reds4.py",
    "./_base_/schedules/adam_cosine_600k.py",
    "./_base_/default_runtime.py",
]
