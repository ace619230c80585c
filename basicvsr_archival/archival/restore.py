"""Restore an archive: verify it, rebuild the SR model (base + delta), super-resolve the LR stream, write.

The LR frames are restored in fixed chunks of ``max_seq_len`` frames with ``overlap`` frames of
context on each side (both recorded in the manifest; manifests written before ``overlap`` existed
restore with 0, as they did then) by the inference API's streaming
:func:`~basicvsr_archival.apis.inference.restore_video_frames`, so memory stays bounded. Output: a
video (``.mp4``/``.mkv``/``.mov``/``.avi``, lossless or CRF per the archive's restore settings) at
the source's frame rate, or a folder of ``%08d.png`` frames; either is written to a temporary name
and renamed when complete.

A video output gets the archive's audio members back (stream-copied, each at its recorded start
offset; re-encoded to AAC only if the container refuses the codec, e.g. PCM into .mp4) and, for a
variable-frame-rate source, the source's frame times (packets retimed, not re-encoded). A PNG
folder has neither: the audio and the frame times are skipped with a note (``RestoreResult.notes``).

What is reproducible (measured with torch 2.13 on x86-64, 640x272 and 192x128 clips):

* On the CPU in fp32, the restored frames are bit-identical from run to run and for any torch
  thread count (``OMP_NUM_THREADS`` / ``torch.set_num_threads``: 1, 2, 3, 4, 8, 16 and 32 gave the
  same network output; the few ops whose rounding depends on how threads split them run on one
  thread, see :mod:`basicvsr_archival.utils.threads`), provided these are the same: the torch
  version (its MKL / oneDNN / NNPACK), the CPU instruction set torch dispatches to and the
  project's C kernels were built for (their variant: ``x86-64-v3`` or ``portable``), and the
  backend and its settings (``models/backends``: 'cpu_kernels' with its convolution
  implementation, Winograd tile and DCN implementation, or plain 'torch'). The archive records
  all of them in ``manifest["restore_backend"]`` (:func:`restore_backend`); a restore applies the
  recorded backend and settings (explicit ``backend`` / ``backend_settings`` override them with a
  one-line warning) and warns in one line when the torch version, CPU instruction set or C
  kernels differ from the record. The plain 'torch' backend's bilinear resizes depend on the
  thread count, so its record pins the count (``threads``) and a restore runs with it. Archives
  without the record restore with the 'auto' backend and the default settings.
* Files: a video is muxed with ``+bitexact`` and encoded with a fixed encoder thread count
  (x264's bytes depend on it), so its bytes are the same for the same frames and ffmpeg build;
  PNG bytes depend on OpenCV's libpng / zlib.
* CUDA and fp16 / bf16 restores are not promised bit-identical (not measured).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from basicvsr_archival.apis.streaming import default_overlap
from basicvsr_archival.errors import CheckpointMismatchError, first_line
from basicvsr_archival.models.backends import (
    BACKENDS,
    BackendSettings,
    apply_backend,
    backend_record,
    planned_record,
)
from basicvsr_archival.models.builder import build_restorer
from basicvsr_archival.utils.audio import mux_streams
from basicvsr_archival.utils.ffmpeg import MediaError, PathLike, VideoWriter, atomic_output, iter_video_frames
from basicvsr_archival.utils.frame_times import retime_video
from basicvsr_archival.utils.output import check_output_path, make_temp_dir, write_png
from basicvsr_archival.utils.threads import pinned_threads

from .container import open_archive
from .model_storage import (
    check_reference,
    decode_model,
    find_base_checkpoint,
    read_state_dict,
)
from .package import ArchiveCorruptError, member_of
from .restore_settings import (  # noqa: F401  (re-exported: the restore API)
    PRECISIONS,
    RestoreError,
    RestoreResult,
    RestoreSettings,
)

# x264's output bytes depend on its thread count (default: the machine's cores): a fixed count makes
# the video file, not only its frames, the same on every machine (the model dominates the time)
ENCODER_THREADS = 4
logger = logging.getLogger(__name__)


def build_model(
    model_cfg: Mapping[str, Any], state: Mapping[str, torch.Tensor], where: str, subset: bool = False
) -> torch.nn.Module:
    """The restorer of ``model_cfg`` with ``state`` loaded strictly (``subset``: only the model's keys)."""
    try:
        model = build_restorer(model_cfg, state, subset=subset, where=f"{where}: stored model")
    except (CheckpointMismatchError, KeyError, TypeError) as exc:
        raise ArchiveCorruptError(first_line(exc)) from None
    return model.eval()


def load_archive_model(
    manifest: Mapping[str, Any],
    folder: Path,
    where: str,
    base_checkpoint: PathLike | Iterable[PathLike] | None = None,
    which: str = "archive",
) -> torch.nn.Module:
    """Rebuild the archive's model (``which='archive'``) or its base without fine-tuning (``'base'``)."""
    model_info = manifest["model"]
    base_info = model_info.get("base_checkpoint")
    search = (
        [base_checkpoint] if isinstance(base_checkpoint, str | os.PathLike) else list(base_checkpoint or [])
    )
    base_state = None
    if base_info:
        path = find_base_checkpoint(base_info, search)
        base_state = read_state_dict(path)
    if which == "base":
        if base_state is None:
            raise RestoreError(
                f"{where}: archive has no base checkpoint (its model was trained from scratch)"
            )
        return build_model(model_info["config"], base_state, where, subset=True)
    if which != "archive":
        raise ValueError(f"which must be 'archive' or 'base', got {which!r}")
    member = member_of(manifest, "model", where)
    compression = model_info["storage"]["compression"]
    init_state = reference_init_state(model_info, where)
    data = (folder / member).read_bytes()
    state = decode_model(data, compression, base_state, f"{where}/{member}", init_state)
    return build_model(model_info["config"], state, where)


def reference_init_state(model_info: Mapping[str, Any], where: str) -> dict[str, torch.Tensor] | None:
    """The seeded initialisation a model stores tensors by reference to (hashes checked), else None."""
    record = model_info["storage"].get("init_reference")
    if not record:
        return None
    from .finetune import initial_state

    state, _ = initial_state(model_info["config"], None, False, int(record["seed"]))
    check_reference(state, record, where)
    return state


def restore_backend(backend: str = "auto", settings: BackendSettings | None = None) -> dict[str, Any]:
    """What decides a CPU restore's bits besides the archive, for ``manifest["restore_backend"]``.

    :func:`~basicvsr_archival.models.backends.planned_record` of ``backend`` and ``settings``
    (default ``BackendSettings.from_env()``) for a float32 CPU model: the backend, its settings, the
    kernel variant, whether the C kernels run here, the threads policy ('any' for 'cpu_kernels',
    the pinned count for 'torch'), the torch version and the CPU instruction set torch dispatches
    to; plus ``encoder_threads``, the fixed thread count of the video encoder.
    """
    return {**planned_record(backend, settings), "encoder_threads": ENCODER_THREADS}


def recorded_backend(manifest: Mapping[str, Any], where: str) -> tuple[str, BackendSettings, int | None]:
    """(backend, settings, pinned thread count or None) of the archive's record (defaults without one).

    Records from before the backends existed (issue 11: ``conv_impl``/``winograd_tile``/``dcn_impl``
    at the top level) restore with 'auto' and those settings.
    """
    rec = manifest.get("restore_backend")
    if not isinstance(rec, Mapping):
        return "auto", BackendSettings.from_env(), None
    backend = rec.get("backend", "auto")
    settings = rec.get("settings") if "backend" in rec else rec
    threads = rec.get("threads")
    try:
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}")
        parsed = BackendSettings.from_dict(dict(settings or {}))
    except (TypeError, ValueError) as exc:
        raise RestoreError(f"{where}: the archive's restore_backend is unknown here ({exc})") from None
    return backend, parsed, threads if isinstance(threads, int) and threads > 0 else None


def _restore_backend_choice(
    manifest: Mapping[str, Any],
    where: str,
    backend: str | None,
    settings: BackendSettings | Mapping[str, Any] | None,
) -> tuple[str, BackendSettings, int | None]:
    """The backend, settings and thread count a restore uses: the record's, or overrides (one warning)."""
    rec_backend, rec_settings, threads = recorded_backend(manifest, where)
    use_backend = rec_backend if backend is None else backend
    if isinstance(settings, Mapping):
        settings = rec_settings.replace(**settings)
    use_settings = rec_settings if settings is None else settings
    if (use_backend, use_settings) != (rec_backend, rec_settings):
        logger.warning(
            "%s: restoring with backend %s %s instead of the archive's %s %s: frames may differ",
            where, use_backend, use_settings.to_dict(), rec_backend, rec_settings.to_dict(),
        )  # fmt: skip
    return use_backend, use_settings, threads


def warn_if_backend_differs(manifest: Mapping[str, Any], device: torch.device, where: str) -> bool:
    """One warning line if this CPU restore cannot reproduce the recorded bits (True if it can)."""
    rec = manifest.get("restore_backend")
    if device.type != "cpu" or not isinstance(rec, Mapping):
        return True
    here = restore_backend(*recorded_backend(manifest, where)[:2])
    keys = ("torch", "cpu_capability", "c_kernels")
    diff = [f"{k} {here[k]} (archive: {rec.get(k)})" for k in keys if rec.get(k) != here[k]]
    if diff:
        logger.warning(
            "%s: restoring with %s: frames may differ in the last bit from restores where they match",
            where,
            ", ".join(diff),
        )
    return not diff


def _write_frames_dir(frames: Iterator[np.ndarray], out: Path) -> tuple[int, tuple[int, int]]:
    """Write ``%08d.png`` frames into a temporary folder beside ``out`` and rename it onto ``out``."""
    tmp = make_temp_dir(out)
    count, size = 0, (0, 0)
    try:
        for frame in frames:
            write_png(tmp / f"{count:08d}.png", frame)  # FrameWriteError names a full disk
            count, size = count + 1, (frame.shape[1], frame.shape[0])
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return count, size


def restore_archive(
    archive: PathLike,
    output: PathLike,
    *,
    device: str | None = None,
    precision: str | None = None,
    max_seq_len: int | None = None,
    base_checkpoint: PathLike | Iterable[PathLike] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    which: str = "archive",
    lossless: bool | None = None,
    overlap: int | None = None,
    backend: str | None = None,
    backend_settings: BackendSettings | Mapping[str, Any] | None = None,
) -> RestoreResult:
    """Verify ``archive`` and write its restored video (or PNG frames) to ``output``.

    Device, precision, chunk length and overlap default to the archive's restore settings
    (``device=None`` there means CUDA when available; a manifest without ``overlap`` means 0). With
    a ``max_seq_len`` other than the archive's and no ``overlap``, the overlap is the default for
    that length (``min(3, max_seq_len // 4)``). ``which='base'`` restores with the base checkpoint
    alone (for comparisons). ``lossless`` overrides the archive's output setting. The result keeps
    the source's frame count, size and frame rate (checked). ``backend`` / ``backend_settings``
    (``models/backends``) default to the archive's record (:func:`recorded_backend`); a mapping
    for ``backend_settings`` overrides some of the recorded settings.
    """
    from basicvsr_archival.apis.inference import InferenceError, read_frame_source, resolve_device
    from basicvsr_archival.apis.inference import restore_video_frames as restore_frames

    src = Path(archive)
    out = Path(output)
    t0 = time.perf_counter()
    notes: list[str] = []
    check_output_path(
        output, inputs=[src], overwrite=overwrite, frames_only=True
    )  # before the archive is verified (hashed) or extracted
    with open_archive(src) as (manifest, folder):
        where = str(src)
        backend, backend_settings, threads = _restore_backend_choice(
            manifest, where, backend, backend_settings
        )
        # manifests from before chunk overlap existed were restored without it: keep their output
        settings = RestoreSettings.from_dict({"overlap": 0, **manifest["settings"]["restore"]})
        exact = settings.lossless if lossless is None else lossless  # lossless: libx264rgb, or ffv1
        codec = settings.codec if not exact else "ffv1" if settings.codec == "ffv1" else "libx264rgb"
        kind = check_output_path(
            output, inputs=[src, folder], overwrite=overwrite, codec=codec, frames_only=True
        )
        source = manifest["source"]
        fps = Fraction(str(source["fps"]))
        want = (int(source["num_frames"]), int(source["width"]), int(source["height"]))
        prec = precision or settings.precision
        seq = max_seq_len if max_seq_len is not None else settings.max_seq_len
        if overlap is None:
            overlap = settings.overlap if seq == settings.max_seq_len else default_overlap(seq)
        try:
            dev = resolve_device(device if device is not None else settings.device)
            warn_if_backend_differs(manifest, dev, where)
            model = load_archive_model(manifest, folder, where, base_checkpoint, which).to(dev)
            apply_backend(model, backend, backend_settings)
            # plain torch on the CPU: its resizes round by thread count, so run with the recorded one
            pin = threads if dev.type == "cpu" and backend_record(model)["backend"] == "torch" else None
            lr = read_frame_source(folder / member_of(manifest, "lr_bitstream", where))
            frames = restore_frames(
                model, lr, max_seq_len=seq, device=dev, precision=prec, progress=progress, overlap=overlap
            )
            extras = _stream_extras(manifest, folder, where)
            with pinned_threads(pin):  # the frames are computed while they are written
                if kind == "video" and any(extras):
                    write = (frames, out, fps, settings, lossless, source, folder)
                    count, size, notes = _write_video_extras(*write, overwrite, *extras)
                elif kind == "video":
                    count, size = _write_video(
                        frames, out, fps, settings, lossless, source, folder, overwrite
                    )
                else:
                    count, size = _write_frames_dir(frames, out)
                    notes = _frames_dir_notes(*extras)
        except (InferenceError, MediaError) as exc:
            raise RestoreError(f"{where}: restore failed: {first_line(exc)}") from None
    if (count, *size) != want:
        raise RestoreError(
            f"{out}: restored {count} frames of {size[0]}x{size[1]}, "
            f"expected {want[0]} of {want[1]}x{want[2]}"
        )
    seconds = time.perf_counter() - t0
    return RestoreResult(
        out, count, size[0], size[1], fps, seconds, str(dev), prec, which, seq, overlap, notes
    )


def _write_video(
    frames: Iterator[np.ndarray],
    out: Path,
    fps: Fraction,
    settings: RestoreSettings,
    lossless: bool | None,
    source: Mapping[str, Any],
    folder: Path,
    overwrite: bool,
) -> tuple[int, tuple[int, int]]:
    """Encode ``frames`` into ``out`` (atomic, deterministic muxing); returns (frames, (w, h))."""
    lossless = settings.lossless if lossless is None else lossless
    if lossless and settings.codec == "ffv1" and out.suffix.lower() != ".mkv":
        raise RestoreError(f"{out}: FFV1 output needs a .mkv file name")
    rng = source.get("color_range") if source.get("color_range") in ("tv", "pc") else None
    writer = VideoWriter(
        out,
        fps=fps,
        codec=settings.codec,
        crf=settings.crf,
        preset=settings.preset,
        pix_fmt=settings.pix_fmt,
        lossless=lossless,
        color_range=None if lossless else rng,
        extra_args=["-fflags", "+bitexact", "-flags:v", "+bitexact", "-threads", str(ENCODER_THREADS)],
        forbid=list(folder.iterdir()),
        overwrite=overwrite,
    )
    count, size = 0, (0, 0)
    with writer:
        for frame in frames:
            writer.write(frame)
            count, size = count + 1, (frame.shape[1], frame.shape[0])
    return count, size


def _stream_extras(
    manifest: Mapping[str, Any], folder: Path, where: str
) -> tuple[list[tuple[Path, float]], list[Fraction] | None]:
    """The archive's audio members (path, start offset) and the source's frame times (VFR only)."""
    audio = []
    for rec in (manifest.get("audio") or {}).get("streams", []):
        entry = manifest["members"].get(rec["member"])
        if entry is None or entry.get("role") != "audio":
            raise ArchiveCorruptError(f"{where}: audio member {rec['member']} is not listed in the manifest")
        audio.append((folder / rec["member"], float(rec.get("start_offset", 0.0))))
    stamps = manifest["source"].get("timestamps") if manifest["source"].get("vfr") else None
    if not stamps:
        return audio, None
    tb = Fraction(str(stamps["time_base"]))
    return audio, [p * tb for p in stamps["pts"]]


def _frames_dir_notes(audio: list[tuple[Path, float]], times: list[Fraction] | None) -> list[str]:
    """What a PNG folder output leaves out."""
    notes: list[str] = []
    if audio:
        notes.append(f"{len(audio)} audio stream(s) skipped: a PNG folder holds no audio (restore to .mkv)")
    if times is not None:
        notes.append("variable frame rate: PNG frames carry no frame times (restore to .mkv or .mp4)")
    return notes


def _write_video_extras(
    frames: Iterator[np.ndarray],
    out: Path,
    fps: Fraction,
    settings: RestoreSettings,
    lossless: bool | None,
    source: Mapping[str, Any],
    folder: Path,
    overwrite: bool,
    audio: list[tuple[Path, float]],
    times: list[Fraction] | None,
) -> tuple[int, tuple[int, int], list[str]]:
    """Encode the video, retime it to ``times`` (VFR) and mux ``audio`` back, atomically."""
    notes: list[str] = []
    with atomic_output(out, forbid=list(folder.iterdir()), overwrite=overwrite) as final_tmp:
        video_only = final_tmp.with_name(f"{final_tmp.stem}.video{out.suffix}")
        retimed = final_tmp.with_name(f"{final_tmp.stem}.retimed.mkv")
        try:
            write = (frames, video_only, fps, settings, lossless, source, folder)
            count, size = _write_video(*write, overwrite=True)
            if times is not None:
                if len(times) != count:
                    raise RestoreError(
                        f"{out}: restored {count} frames but the archive has {len(times)} frame times"
                    )
                retime_video(video_only, retimed, times)
            if mux_streams(retimed if times is not None else video_only, audio, final_tmp) == "aac":
                notes.append(f"audio re-encoded to AAC: {out.suffix} cannot hold its codec (use .mkv)")
        finally:
            video_only.unlink(missing_ok=True)
            retimed.unlink(missing_ok=True)
    return count, size, notes


def decoded_frames(path: PathLike) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a restored video or PNG folder (for comparisons)."""
    p = Path(path)
    if p.is_dir():
        for f in sorted(p.glob("*.png")):
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise RestoreError(f"{f}: cannot read PNG")
            yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return
    yield from iter_video_frames(p)
