"""Defaults of an archival job: what is stored (LR encode + SR model) and how it is restored.

An archive job (``tools/archive.py CONFIG VIDEO -o ARCHIVE``) reads these top-level entries:

* ``codec``: the LR encode (:class:`basicvsr_archival.archival.codec.CodecSettings`): ``scale`` 2 or 4,
  ``downscale_filter`` bicubic/area/lanczos, ``codec`` libx264/libx265/libaom-av1, ``crf`` or
  ``bitrate``, ``preset`` (libaom: -cpu-used), ``gop``, ``pix_fmt`` (None = the source's); optional
  ``sr_aware=dict(enabled=True, gop=48, crfs=(18, 23, 28, 33, 38), budget=None, target_psnr=None)``
  (libx264): a CRF per ``gop``-frame segment, chosen with the fine-tuned model for the most post-SR
  PSNR per byte within the uniform encode's bytes (or ``budget`` bytes, or up to ``target_psnr``)
  (:mod:`basicvsr_archival.archival.sr_aware`);
* ``model``: the restorer (BasicVSR + BasicVSR++ generator; ``upscale_factor`` must equal the scale);
  ``base_checkpoint``: path of the weights fine-tuning starts from (None = from scratch), which a
  delta model refers to by SHA-256; ``base_allow_extra_keys``: accept a base with more tensors than
  the model (a x4 base for a x2 model);
* ``finetune``: budget (``max_iters`` and ``max_seconds`` wall clock; whichever comes first),
  ``clip_length`` frames per sample, GT ``patch_size``, ``lr``, ``batch_size``, frozen parameter
  name fragments, frames for the before/after PSNR (``eval_frames``, or ``held_out_frames``);
* ``storage``: the model member: ``mode`` full | delta | auto (delta iff a base exists), ``dtype``
  fp32 | fp16 | int8 (per-tensor scale, for deltas), ``compression`` none | zlib | lzma, ``level``,
  ``reference_init`` (from scratch: tensors still at their seeded initialisation are stored as
  SHA-256 hashes and regenerated at restore, which needs the archiving torch version's init);
* ``restore``: ``device`` (None = CUDA if available), ``precision`` fp32 | fp16 (CUDA) | bf16,
  ``max_seq_len`` (fixed chunk length: bounded memory, reproducible output), ``overlap`` (context
  frames on each side of a chunk so chunk borders do not show; None = ``min(3, max_seq_len // 4)``,
  recorded as a number in the manifest), and ``output``:
  ``lossless`` (libx264rgb CRF 0, or FFV1 in .mkv with ``codec='ffv1'``) or a CRF encode;
* ``drop_audio``: leave the source's audio streams out (``tools/archive.py --drop-audio``); by default
  each is kept as a member ``audio<i>.mka`` and restored into video outputs.
"""

_base_ = ["../../_base_/models/basicvsr_plusplus_c64n7.py"]  # the restorer (c64n7 x4)

codec = dict(
    scale=4,
    downscale_filter="bicubic",
    codec="libx264",
    crf=23,
    bitrate=None,
    preset="medium",
    gop=None,
    pix_fmt=None,
)

model = dict(generator=dict(upscale_factor=4))
# the official REDS4 x4 BasicVSR++ weights, under the name of chkpts/README.md; not in git
base_checkpoint = "chkpts/basicvsr_plusplus_reds4.pth"
base_allow_extra_keys = False

finetune = dict(
    enabled=True,
    max_iters=2000,
    max_seconds=3600.0,
    clip_length=15,
    patch_size=256,
    lr=1e-4,
    lr_schedule="cosine",
    eta_min_ratio=0.1,
    batch_size=1,
    num_workers=2,
    augment=False,  # flips/transposes: off, the model should specialise in this one video
    frozen=("spynet",),
    held_out_frames=0,
    eval_frames=10,
    checkpoint_interval=200,
    log_interval=50,
    seed=0,
)

storage = dict(mode="auto", dtype="fp16", compression="lzma", level=9, reference_init=True)

restore = dict(
    device=None,
    precision="fp32",
    max_seq_len=30,
    overlap=None,
    output=dict(lossless=True, codec="libx264", crf=18, preset="medium", pix_fmt="yuv420p"),
)

drop_audio = False
