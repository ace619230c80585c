"""BasicVSR++ c64n7 x4 on Vimeo-90K (BD: Gaussian blur sigma 1.6 + x4 subsampling), official recipe.

The BI recipe (``basicvsr_plusplus_vimeo90k_bi.py``) on the BD frames; validation on Vid4-BD (Y channel).
"""

_base_ = [
    "./_base_/models/basicvsr_plusplus_c64n7.py",
    "./_base_/datasets/vimeo90k_bd.py",
    "./_base_/schedules/adam_cosine_300k.py",
    "./_base_/default_runtime.py",
]
