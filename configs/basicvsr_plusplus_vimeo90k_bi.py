"""BasicVSR++ c64n7 x4 on Vimeo-90K (BI degradation), the official recipe; validation on Vid4 (Y channel).

4 GPUs x batch 2, 300k iterations, 7-frame septuplets mirrored to 14 frames, 256 px GT crops, flips and
transposes; SPyNet fixed for 5000 iterations. Paths are config fields (``--cfg-options data_root=...``
sets every split; see ``data/README.md`` for the layouts).
"""

_base_ = [
    "./_base_/models/basicvsr_plusplus_c64n7.py",
    "./_base_/datasets/vimeo90k_bi.py",
    "./_base_/schedules/adam_cosine_300k.py",
    "./_base_/default_runtime.py",
]
