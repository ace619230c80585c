"""Price table ``ncs2023``: the cost table of HotStorage '23 "Neural Cloud Storage".

Three S3 tiers with two prices each (USD per GB-month stored, USD per GB retrieved) and the GPU price
of a restore; no minimum durations, object sizes, request fees or restore copies. These are the cost
model's defaults (``basicvsr_archival.archival.billing.DEFAULT_TIERS``, ``CostModel()``) and the
``cost`` section of the study configs, so studies priced with this table are unchanged.

Source of every value: HotStorage '23, "Neural Cloud Storage" (its AWS S3 storage-tier and GPU
prices), as this project has carried them since its cost model (basicvsr_archival/archival/cost.py,
configs/archival/study_default.py); the paper's text is not among the search tool's stored pages,
so they were not re-read for this file (2026-12).
"""

cost = dict(
    tiers={
        "Frequent": [0.021, 0.0],  # USD/GB-month, USD/GB retrieved; HotStorage '23 (2023)
        "Infrequent": [0.0125, 0.01],  # HotStorage '23 (2023)
        "Archive": [0.004, 0.03],  # HotStorage '23 (2023)
    },
    gpu_usd_per_hour=0.302,  # HotStorage '23 (2023): GPU price of a restore
    gb="SI",  # 1e9 bytes per GB, as the paper's sizes
    days_per_month=30.0,
)
