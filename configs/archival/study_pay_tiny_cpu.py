"""Issue 15 benchmark on the CPU (``benchmarks/bench_pay.py``): SR-aware CRFs, model sizes, catalog plan.

The study_tiny_ci recipe (c8n1 x2, from scratch, a base pre-trained on a held-out clip given on the
command line) with SR-aware encoding on: x264 zones (one ordinary stream, a CRF per segment of 8
frames), a ladder of CRFs 20-44 in steps of 2; the study's budgets are the payloads of the uniform
streams at CRFs 24-40 (inside the ladder, so every segment can move both ways). The model of each
video is fine-tuned 120 iterations on its uniform stream at the middle CRF (32) before the allocation
uses it. ``cluster``: the collection the model-size ladder and the catalog plan run on (one torch
thread per task, steadiest on shared cores).
"""

_base_ = ["./study_tiny_ci.py"]

codec = dict(sr_aware=dict(enabled=True, mode="zones", gop=8, crfs=list(range(20, 45, 2))))
finetune = dict(max_iters=120, max_seconds=3600.0, patch_size=64, checkpoint_interval=40)
study = dict(crfs=[32], vmaf=False, sr_aware_budgets=[24, 28, 32, 36, 40],
             base_pretrain=dict(finetune=dict(max_iters=300, max_seconds=3600.0)))  # fmt: skip
tco = dict(original_crf=None)
cluster = dict(method="kmeans", k=None, max_videos_per_cluster=4, seed=0, iters_per_video=60, max_iters=120,
               threads=1, max_seconds=3600.0)  # fmt: skip
engine = dict(max_retries=2)
