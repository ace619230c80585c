"""Issue 15 benchmark on the CPU (``benchmarks/bench_pay.py``): SR-aware CRFs, model sizes, catalog plan.

The study_tiny_ci recipe (c8n1 x2, from scratch, a base pre-trained on a held-out clip given on the
command line) with SR-aware encoding on: segments of 8 frames (closed GOPs), a ladder of five CRFs
(24-40); the model of each video is fine-tuned 120 iterations on its uniform stream at the middle
CRF (32) before the allocation uses it. ``cluster``: the collection the model-size ladder and the
catalog plan run on (one torch thread per task, steadiest on shared cores).
"""

_base_ = ["./study_tiny_ci.py"]

codec = dict(sr_aware=dict(enabled=True, gop=8, crfs=[24, 28, 32, 36, 40]))
finetune = dict(max_iters=120, max_seconds=3600.0, patch_size=64, checkpoint_interval=40)
study = dict(crfs=[32], vmaf=False, base_pretrain=dict(finetune=dict(max_iters=300, max_seconds=3600.0)))
tco = dict(original_crf=None)
cluster = dict(method="kmeans", k=None, max_videos_per_cluster=4, seed=0, iters_per_video=60, max_iters=120,
               threads=1, max_seconds=3600.0)  # fmt: skip
engine = dict(max_retries=2)
