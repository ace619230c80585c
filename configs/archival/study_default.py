"""Study ladder of the default archive (x4 H.264, BasicVSR++ c64n7 fine-tuned from the REDS4 weights).

Used by ``tools/archival_study.py CONFIG VIDEO [VIDEO ...] -o WORKDIR``. On top of the archival
settings (``codec``, ``model``, ``base_checkpoint``, ``finetune``, ``storage``, ``restore``; here those
of ``x4_h264_crf23_finetune.py``) a study reads:

* ``study``: the ladder ``scales`` (2 and/or 4; each needs a model with that ``upscale_factor``,
  which the study sets) x ``crfs``; the options measured (``variants``: ``full`` plus any of
  ``bicubic``, ``sr_base``, ``sr_finetuned``); ``vmaf``; ``crop_multiple`` (None: crop the source
  to a size every scale divides, chroma included); ``keep_videos`` (keep restored videos);
  ``bd_method`` (``pchip`` piecewise cubic, or ``cubic`` polynomial as in VCEG-M33);
  ``base_pretrain`` (without a ``base_checkpoint``: ``dict(video=PATH, crf=None, finetune=dict(...))``
  trains a base once per scale on *another* video, from scratch, with these fine-tuning overrides);
* ``tco``: ``horizon_days``, ``cluster_size`` (videos sharing one fine-tuning run), ``model_shared_by``
  (videos sharing one stored model; None = ``cluster_size``), ``original_crf`` (the original's CRF;
  None = ``codec.crf``), ``scale`` of the SR options compared (None = the first), ``match``
  (``crf``: the SR point at the same CRF; ``psnr``/``vmaf``: the smallest SR point reaching the
  original's quality minus ``match_tolerance``), ``interval_days`` (min, max, number of log-spaced
  access intervals), ``cpu_usd_per_hour`` (price of CPU seconds; None = ``cost.gpu_usd_per_hour``);
* ``cost``: :class:`basicvsr_archival.archival.cost.CostModel` settings: storage ``tiers``
  (``{name: [USD per GB-month, USD per GB retrieved]}``), ``gpu_usd_per_hour``, ``gb`` (bytes per GB:
  'SI' 1e9 or 'binary' 2**30), ``days_per_month``. Defaults: the HotStorage '23 "Neural Cloud
  Storage" S3 tiers and GPU price (price table ``configs/archival/prices/ncs2023.py``); tiers may also
  carry minimums, overheads and request fees, as in ``configs/archival/prices/aws_s3.py``.
"""

_base_ = ["./x4_h264_crf23_finetune.py"]

study = dict(
    scales=[4],
    crfs=[18, 23, 28, 33],
    variants=["full", "bicubic", "sr_base", "sr_finetuned"],
    vmaf=True,
    crop_multiple=None,
    keep_videos=False,
    bd_method="pchip",
    base_pretrain=None,
)

tco = dict(
    horizon_days=365.0,
    cluster_size=1,
    model_shared_by=None,
    original_crf=23,
    scale=None,
    match="crf",
    match_tolerance=0.0,
    interval_days=(1.0, 3650.0, 61),
    cpu_usd_per_hour=0.085,  # e.g. a 2-vCPU cloud instance; GPU-restored points use cost.gpu_usd_per_hour
)

cost = dict(
    tiers={"Frequent": [0.021, 0.0], "Infrequent": [0.0125, 0.01], "Archive": [0.004, 0.03]},
    gpu_usd_per_hour=0.302,
    gb="SI",
    days_per_month=30.0,
)
