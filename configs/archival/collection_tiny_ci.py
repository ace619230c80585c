"""A collection with the tiny CI model: c8n1 x2 from scratch, one model per k-means cluster.

What CI archives (6+ short real segments, a few CPU minutes): the tiny_ci recipe, with a budget of
10 iterations per video in a cluster (at most 60), torch pinned to one thread in every task (the
local and the Ray engine then compute the same bits) and no wall-clock cap that could bind.
``k=None`` with ``max_videos_per_cluster`` lets the size bound choose how many clusters there are.
"""

_base_ = ["./tiny_ci.py"]

finetune = dict(max_seconds=3600.0, checkpoint_interval=10)
cluster = dict(
    method="kmeans",
    k=None,
    max_videos_per_cluster=4,
    seed=0,
    iters_per_video=10,
    max_iters=60,
    threads=1,
)
engine = dict(max_retries=2)
