"""A collection that picks each cluster's model size: c8n1, c16n2 and c32n4 from scratch on the CPU.

The collection_tiny_ci recipe with ``model.size_ladder``: every cluster is fine-tuned at each size with
the same budget, and the size with the lowest TCO at 1 view per month (the paper's price table,
restores priced from a throughput profile measured into ``STORE/work/throughput.json``) among those
within 0.2 dB of the best post-SR PSNR is kept. Comparing sizes needs evaluation frames.
"""

_base_ = ["./collection_tiny_ci.py"]

model = dict(
    size_ladder=dict(
        sizes=["c8n1", "c16n2", "c32n4"],
        views_per_month=1.0,
        quality_tolerance_db=0.2,
        prices="ncs2023",
        throughput_profile=None,
        device="cpu",
        precision="fp32",
        horizon_days=365,
    )
)
finetune = dict(eval_frames=8)
