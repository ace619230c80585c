"""Quick-start study: archive -> restore -> report of the generated sample, in about two CPU minutes.

The README's quick start runs it on the clips of ``tools/make_sample_video.py`` (no downloads)::

    python tools/make_sample_video.py results/sample.mkv --base results/sample_base.mkv
    python tools/archival_study.py configs/archival/study_quickstart.py results/sample.mkv \\
        -o results/quickstart --threads 1 --cfg-options study.base_pretrain.video=results/sample_base.mkv

What it measures, per CRF of the x2 ladder (18 and 32): the full-resolution encode, LR + bicubic,
LR + base SR and LR + fine-tuned SR (bytes, PSNR / SSIM / VMAF, seconds), BD-rates and the
storage-cost break-even, with ``tiny_ci``'s c8n1 BasicVSR++ x2 without motion estimation
(``flow_estimator='none'``: zero flows, the alignment relies on its learned offsets only, no SPyNet;
228k parameters). A from-scratch tiny SPyNet is zeroed and frozen, so it predicts zero flow anyway
(same outputs): dropping it only removes its cost, most of the restore time of such a model.

* base model: trained from scratch on *another* clip (``study.base_pretrain.video``, the sample's
  ``--base`` clip: same kind of content, other seed) for ``base_pretrain.finetune.max_iters``
  iterations, everything but the deformable alignment;
* per-video model: the base fine-tuned on each point's decoded LR stream for ``finetune.max_iters``
  iterations: only the propagation branches, feature extraction, reconstruction and conv_last
  (``conv_hr`` and ``upsample1`` stay frozen too), so the archive stores a small int8 delta;
* budgets are iteration counts (the same numbers on every machine); ``max_seconds`` only caps a
  very slow machine. ``--threads 1``: with 2 shared cores one torch thread is the fastest.

About 80 CPU-seconds in all (24 frames of 256x144: 3 trainings, 4 SR restores, 8 VMAF runs; the
README gives the measured time). The numbers say little about real footage (the model is tiny and
barely trained, the clip about a second long, so a per-video model cannot pay for itself);
``study_default.py`` is the real study.
"""

_base_ = ["./tiny_ci.py"]

# no motion estimation: zero flows, the alignment relies on its learned offsets only (no SPyNet)
model = dict(generator=dict(flow_estimator="none"))
finetune = dict(
    max_iters=25,
    max_seconds=120.0,
    clip_length=2,
    patch_size=128,
    lr=2e-3,
    lr_schedule="cosine",
    eta_min_ratio=0.1,
    frozen=("deform_align", "conv_hr", "upsample1"),
    eval_frames=0,
    checkpoint_interval=1000,
    log_interval=10,
)
restore = dict(max_seq_len=24)  # the whole sample (24 frames) in one chunk

study = dict(
    scales=[2],
    crfs=[18, 32],
    variants=["full", "bicubic", "sr_base", "sr_finetuned"],
    vmaf=True,
    crop_multiple=None,
    keep_videos=False,
    bd_method="pchip",
    base_pretrain=dict(
        video=None,  # set on the command line: study.base_pretrain.video=results/sample_base.mkv
        crf=None,  # the base is trained on that clip's LR encode at codec.crf (23)
        finetune=dict(max_iters=75, max_seconds=300.0, frozen=("deform_align",)),
    ),
)

tco = dict(
    horizon_days=365.0,
    cluster_size=1,
    model_shared_by=None,
    original_crf=18,
    scale=None,
    match="crf",
    match_tolerance=0.0,
    interval_days=(1.0, 3650.0, 41),
    cpu_usd_per_hour=0.085,
)

cost = dict(
    tiers={"Frequent": [0.021, 0.0], "Infrequent": [0.0125, 0.01], "Archive": [0.004, 0.03]},
    gpu_usd_per_hour=0.302,
    gb="SI",
    days_per_month=30.0,
)
