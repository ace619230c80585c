"""Shared-model study on the CPU (``benchmarks/bench_collection.py``): tiny c8n1 x2, a pre-trained base.

The study_tiny_ci recipe with the budgets that matter for sharing: a base pre-trained from scratch on
a held-out clip (``study.base_pretrain``, 300 iterations; the video is given on the command line),
then per cluster ``min(iters_per_video x videos, max_iters)`` fine-tuning iterations with
``max_iters = 4/3 x iters_per_video``: a cluster of 4 gets a third more than one per-video model, so
its fine-tuning seconds per video fall 3x. One torch thread per task (steadiest on shared cores).
"""

_base_ = ["./study_tiny_ci.py"]

study = dict(crfs=[28], vmaf=True, base_pretrain=dict(finetune=dict(max_iters=300, max_seconds=3600.0)))
tco = dict(original_crf=None)
cluster = dict(iters_per_video=120, max_iters=160, threads=1, max_seconds=3600.0)
