"""The archive job: probe -> encode LR -> decode LR -> fine-tune [-> SR-aware encode] -> package, resumable.

Every finished stage is recorded in ``WORK/state.json`` (written atomically) with what it produced;
a re-run with ``resume=True`` skips recorded stages whose outputs are still there, continues an
interrupted fine-tuning from its last checkpoint, and rebuilds the package (removing the temporary
directory an interrupted packaging left). The state also records the source's size / mtime and a
fingerprint of the settings that shape the work products, and refuses to resume if they changed.

Work dir contents: ``lr.mp4`` (the LR encode), ``lr_decoded.mkv`` (its frames, FFV1, what training
and retrieval see), ``finetune/`` (mmengine work dir, ``finetuned.pth``), ``audio<i>.mka`` (each
audio stream of the source, stream-copied; none with ``drop_audio``), with ``codec.sr_aware.enabled``
``lr_sr_aware.mp4`` (the LR stream re-encoded with a CRF per segment, :mod:`.sr_aware`, archived as
the LR member instead of ``lr.mp4``) and ``sr_aware/``, ``state.json`` (paths in it
relative to the work dir, which may be moved), ``.lock``. A running job holds ``WORK/.lock`` and
``OUT.lock`` beside the archive (:func:`.job_state.job_locks`): a second job on either fails at once.

A variable-frame-rate source (frame times off the nominal rate's grid) is flagged ``vfr`` in the
manifest's ``source``, which then also holds its frame times (``timestamps``); restore uses them.
"""

from __future__ import annotations

import datetime
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config

from basicvsr_archival.models.backends import apply_backend
from basicvsr_archival.utils.audio import extract_audio
from basicvsr_archival.utils.ffmpeg import PathLike, VideoInfo, VideoWriter, command_string, probe_video
from basicvsr_archival.utils.frame_times import frame_times
from basicvsr_archival.utils.output import OutputPathError, check_output_location

from . import codec as codec_mod
from . import finetune as finetune_mod
from . import sr_aware as sr_aware_mod
from .container import verify_archive, write_archive
from .job_config import ArchivalConfig, load_archival_config, stored_model_config
from .job_state import STAGES, JobState, WorkDirMismatchError, default_work_dir, job_locks, resume_hint
from .model_storage import (
    encode_model,
    read_state_dict,
)
from .package import (
    ArchiveError,
    ArchiveExistsError,
    sha256_file,
)
from .restore import build_model, restore_backend

LR_NAME = "lr.mp4"
DECODED_NAME = "lr_decoded.mkv"
SR_AWARE_NAME = "lr_sr_aware.mp4"  # the SR-aware re-encode, archived as the LR member LR_NAME


@dataclass
class JobResult:
    """Outcome of :func:`run_archive_job`."""

    archive: Path
    manifest: dict[str, Any]
    work_dir: Path
    stages_run: list[str] = field(default_factory=list)


def _info_dict(info: VideoInfo) -> dict[str, Any]:
    """Probe result as a JSON-friendly dict (fps as an exact fraction string)."""
    return {
        "width": info.width,
        "height": info.height,
        "fps": str(info.fps),
        "num_frames": info.num_frames,
        "pix_fmt": info.pix_fmt,
        "color_range": info.color_range,
        "codec": info.codec,
        "duration": info.duration,
        "has_audio": info.has_audio,
        "bytes": info.bytes,
        "colorspace": info.colorspace,
        "color_primaries": info.color_primaries,
        "color_trc": info.color_trc,
    }


# ------------------------------------------------------------------------------------------ the job
def run_archive_job(
    config: PathLike | Config | Mapping[str, Any] | ArchivalConfig,
    video: PathLike,
    output: PathLike,
    work_dir: PathLike | None = None,
    resume: bool = False,
    cfg_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    drop_audio: bool = False,
) -> JobResult:
    """Archive ``video`` into ``output`` (a directory, or a ``.tar``) following ``config``.

    Stages: probe + SHA-256 of the source; LR encode (:func:`codec.encode_lr`); decode of the LR
    stream to FFV1; fine-tuning (:func:`finetune.finetune_video`); with ``codec.sr_aware.enabled``
    the SR-aware re-encode with the fine-tuned model (:func:`sr_aware.sr_aware_encode`); packaging
    (:func:`container.write_archive`).
    Without ``resume`` a work dir holding an earlier run is refused; with it, finished stages are kept.
    While the job runs, another on the same archive or work dir is refused at once (:func:`job_locks`).
    Every audio stream is kept as a member (copied into Matroska) unless ``drop_audio`` (or the config's).
    """
    cfg = config if isinstance(config, ArchivalConfig) else load_archival_config(config, cfg_options)
    if drop_audio:
        cfg = replace(cfg, drop_audio=True)
    src, out = Path(video), Path(output)
    work = Path(work_dir) if work_dir is not None else default_work_dir(out)
    if not src.is_file():
        raise ArchiveError(f"{src}: source video not found")
    try:  # before any work: no folder on the way to the archive or work dir is a file, both writable
        check_output_location(out)
        check_output_location(work / "state")
    except OutputPathError as exc:
        raise ArchiveError(str(exc)) from None
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise ArchiveExistsError(f"{out}: refusing to write the archive over the input {src}")
    if work.resolve() == src.resolve() or out.resolve() in [work.resolve(), *work.resolve().parents]:
        raise ArchiveError(f"{work}: the work dir can be neither the input nor inside the archive {out}")
    if cfg.base_checkpoint is not None and not cfg.base_checkpoint.is_file():
        raise ArchiveError(f"{cfg.base_checkpoint}: base checkpoint not found (config base_checkpoint)")
    with job_locks(out, work):
        return _run_locked_job(cfg, src, out, work, resume, progress)


def _run_locked_job(
    cfg: ArchivalConfig, src: Path, out: Path, work: Path, resume: bool, progress: bool
) -> JobResult:
    """The job once its locks are held: check the work dir's state, then run the stages."""
    state = JobState(work)
    if state.exists and not resume:
        raise ArchiveError(f"{work}: holds an earlier archive run; {resume_hint(work)}")
    _check_work_owner(state, cfg, src, work)
    done = state.stage("package")
    if out.exists():
        if resume and done and done.get("archive") == str(out.resolve()):
            report = verify_archive(out)
            return JobResult(out, report.manifest, work, [])
        raise ArchiveExistsError(f"{out}: already exists; archives are never overwritten")
    state.data.update(fingerprint=cfg.fingerprint(), config=cfg.to_dict(), source_path=str(src.resolve()))
    work.mkdir(parents=True, exist_ok=True)
    state.save()
    try:
        return _run_stages(state, cfg, src, out, work, progress)
    except WorkDirMismatchError:
        raise
    except Exception as exc:  # the work dir keeps what was done: say how to go on
        exc.add_note(f"the work dir keeps the finished stages: {resume_hint(work)}")
        raise


def _run_stages(
    state: JobState, cfg: ArchivalConfig, src: Path, out: Path, work: Path, progress: bool
) -> JobResult:
    """Run (or skip, when recorded and intact) every stage in order."""
    run: list[str] = []
    _stage_probe(state, src, run)
    _stage_encode(state, cfg, src, work, run)
    _stage_decode(state, work, run)
    _stage_finetune(state, cfg, src, work, progress, run)
    _stage_sr_aware(state, cfg, src, work, progress, run)
    _stage_audio(state, cfg, src, work, run)
    manifest = _stage_package(state, cfg, src, out, work, run)
    return JobResult(out, manifest, work, run)


def _check_work_owner(state: JobState, cfg: ArchivalConfig, src: Path, work: Path) -> None:
    """Refuse a work dir made for another source or with other settings (one line naming it)."""
    if state.data.get("source_path", str(src.resolve())) != str(src.resolve()):
        raise WorkDirMismatchError(
            f"{work}: belongs to the archive run of {state.data['source_path']}; use another --work-dir"
        )
    if state.data.get("fingerprint", cfg.fingerprint()) != cfg.fingerprint():
        raise WorkDirMismatchError(f"{work}: was made with different settings; use another --work-dir")


def prepare_video(cfg: ArchivalConfig, src: Path, work: Path) -> JobState:
    """The per-video stages of a collection (probe, LR encode, decode, audio) in ``work``; resumable.

    Runs in a worker: takes no lock (the collection's driver holds the store's) and returns the state.
    """
    state = JobState(work)
    _check_work_owner(state, cfg, src, work)
    state.data.update(fingerprint=cfg.fingerprint(), config=cfg.to_dict(), source_path=str(src.resolve()))
    work.mkdir(parents=True, exist_ok=True)
    run: list[str] = []
    _stage_probe(state, src, run)
    _stage_encode(state, cfg, src, work, run)
    _stage_decode(state, work, run)
    _stage_audio(state, cfg, src, work, run)
    return state


def _stage_probe(state: JobState, src: Path, run: list[str]) -> None:
    """Probe the source and hash it (once); on resume check that it did not change."""
    st = src.stat()
    rec = state.stage("probe")
    if rec is not None:
        if (rec["bytes"], rec["mtime_ns"]) != (st.st_size, st.st_mtime_ns):
            raise WorkDirMismatchError(
                f"{src}: source changed since this work dir was made; use another --work-dir"
            )
        return
    t0 = time.perf_counter()
    info = probe_video(src)
    if info.num_frames < 2:
        raise ArchiveError(f"{src}: has {info.num_frames} frame(s); at least 2 are needed")
    digest = sha256_file(src)
    record = {"info": _info_dict(info), "sha256": digest, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    record["info"].update(_frame_times_record(src, info))
    record["seconds"] = time.perf_counter() - t0
    state.invalidate_after("probe")
    state.finish("probe", record)
    run.append("probe")


def _frame_times_record(src: Path, info: VideoInfo) -> dict[str, Any]:
    """``{'vfr': bool}``, plus the frame times (``timestamps``) of a variable-frame-rate source."""
    times = frame_times(src)
    if times is None or len(times.pts) != info.num_frames or not times.is_vfr(info.fps):
        return {"vfr": False}
    pts = [p - times.pts[0] for p in times.pts]
    return {"vfr": True, "timestamps": {"time_base": str(times.time_base), "pts": pts}}


def _stage_audio(state: JobState, cfg: ArchivalConfig, src: Path, work: Path, run: list[str]) -> None:
    """Copy every audio stream of the source into ``WORK/audio<i>.mka`` (none with ``drop_audio``)."""
    rec = state.stage("audio")
    if rec is not None and all(_file_ok(work / s["member"], s) for s in rec["streams"]):
        return
    t0 = time.perf_counter()
    streams = [] if cfg.drop_audio else extract_audio(src, work)
    for s in streams:
        s["file_bytes"] = (work / s["member"]).stat().st_size
    record = {"dropped": cfg.drop_audio, "streams": streams, "seconds": time.perf_counter() - t0}
    state.finish("audio", record)
    run.append("audio")


def _audio_manifest(state: JobState) -> tuple[dict[str, Any], dict[str, Path]]:
    """The manifest's ``audio`` entry and the audio member files (name -> path in the work dir)."""
    rec = state.stage("audio")
    streams = [{k: v for k, v in s.items() if k != "file_bytes"} for s in rec["streams"]]
    work = state.path.parent
    return {"dropped": rec["dropped"], "streams": streams}, {s["member"]: work / s["member"] for s in streams}


def _file_ok(path: Path, rec: Mapping[str, Any] | None) -> bool:
    """True if a stage record exists and its output file is there with the recorded size."""
    return rec is not None and path.is_file() and path.stat().st_size == rec.get("file_bytes")


def _stage_encode(state: JobState, cfg: ArchivalConfig, src: Path, work: Path, run: list[str]) -> None:
    """Downscale + encode the source into ``WORK/lr.mp4``."""
    lr = work / LR_NAME
    if _file_ok(lr, state.stage("encode_lr")):
        return
    state.invalidate_after("probe")
    res = codec_mod.encode_lr(src, lr, cfg.codec)
    record = {
        "file_bytes": res.bytes,
        "sha256": sha256_file(lr),
        "seconds": res.seconds,
        "command": res.command_str,
        "width": res.width,
        "height": res.height,
        "num_frames": res.num_frames,
        "pix_fmt": res.pix_fmt,
    }
    state.finish("encode_lr", record)
    run.append("encode_lr")


def _stage_decode(state: JobState, work: Path, run: list[str]) -> None:
    """Decode the LR stream (as retrieval will) into a lossless FFV1 file for random-access training."""
    dec = work / DECODED_NAME
    if _file_ok(dec, state.stage("decode_lr")):
        return
    state.invalidate_after("encode_lr")
    shutil.rmtree(work / "finetune", ignore_errors=True)  # trained on an older LR stream
    t0 = time.perf_counter()
    frames = _decode_lossless(state, work / LR_NAME, dec)
    record = {"file_bytes": dec.stat().st_size, "num_frames": frames}
    record["seconds"] = time.perf_counter() - t0
    state.finish("decode_lr", record)
    run.append("decode_lr")


def _decode_lossless(state: JobState, lr: Path, dec: Path) -> int:
    """Decode ``lr`` into the lossless FFV1 file ``dec``; raise unless it has the source's frame count."""
    fps = state.stage("probe")["info"]["fps"]
    with VideoWriter(dec, fps=fps, lossless=True, codec="ffv1") as writer:
        for frame in codec_mod.decode_frames(lr):
            writer.write(frame)
    want = state.stage("probe")["info"]["num_frames"]
    if writer.frames_written != want:
        raise ArchiveError(f"{lr}: decoded {writer.frames_written} frames, source has {want}")
    return writer.frames_written


def _base_record(cfg: ArchivalConfig) -> dict[str, Any] | None:
    """Name, SHA-256 and size of the base checkpoint."""
    if cfg.base_checkpoint is None:
        return None
    p = cfg.base_checkpoint
    return {"name": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size}


def _stage_finetune(
    state: JobState, cfg: ArchivalConfig, src: Path, work: Path, progress: bool, run: list[str]
) -> None:
    """Fine-tune on (decoded LR, source) in ``WORK/finetune`` (resumes from its checkpoints)."""
    rec = state.stage("finetune")
    base = _base_record(cfg)
    if rec is not None and rec.get("base") != base:
        raise WorkDirMismatchError(
            f"{cfg.base_checkpoint}: base checkpoint changed since fine-tuning; use another --work-dir"
        )
    if rec is not None and (work / rec["checkpoint"]).is_file():  # older states: absolute paths
        return
    state.invalidate_after("decode_lr")
    t0 = time.perf_counter()
    result = finetune_mod.finetune_video(
        cfg.model,
        work / DECODED_NAME,
        src,
        work / "finetune",
        cfg.finetune,
        base_checkpoint=cfg.base_checkpoint,
        base_allow_extra_keys=cfg.base_allow_extra_keys,
        scale=cfg.codec.scale,
        eval_max_seq_len=cfg.restore.max_seq_len,
        eval_overlap=cfg.restore.overlap,
        progress=progress,
        resume=True,
    )
    checkpoint = str(result.checkpoint.relative_to(work))  # relative: the work dir may move
    record = {"checkpoint": checkpoint, "stats": result.stats, "base": base}
    record["seconds"] = time.perf_counter() - t0
    state.finish("finetune", record)
    run.append("finetune")


def _stage_sr_aware(
    state: JobState, cfg: ArchivalConfig, src: Path, work: Path, progress: bool, run: list[str]
) -> None:
    """``codec.sr_aware``: re-encode the LR stream with per-segment CRFs chosen with the fine-tuned model.

    The model fine-tuned on the uniform stream measures the ladder (:func:`.sr_aware.sr_aware_encode`,
    chunked as the archive restores); the result ``WORK/lr_sr_aware.mp4`` replaces the uniform stream
    as the archive's LR member (the uniform one stays in the work dir only). With ``refine_iters``
    the model is then fine-tuned a little more on the SR-aware stream (:func:`_refine`).
    """
    if not cfg.sr_aware.enabled:
        return
    out, rec = work / SR_AWARE_NAME, state.stage("sr_aware")
    if _file_ok(out, rec) and (not rec.get("refine") or (work / rec["refine"]["checkpoint"]).is_file()):
        return
    state.invalidate_after("finetune")
    t0 = time.perf_counter()
    ft = state.stage("finetune")
    model = build_model(stored_model_config(cfg.model), read_state_dict(work / ft["checkpoint"]), str(src))
    apply_backend(model, "auto")  # the path restores take
    res = sr_aware_mod.sr_aware_encode(
        src, out, cfg.codec, cfg.sr_aware, model, work / "sr_aware",
        max_seq_len=cfg.restore.max_seq_len, overlap=cfg.restore.overlap, uniform=work / LR_NAME,
    )  # fmt: skip
    record = {"file_bytes": res.bytes, "sha256": sha256_file(out), "command": command_string(res.command)}
    record |= {"segments": res.segments(), "sr_aware": res.to_dict()}
    if cfg.sr_aware.refine_iters:
        record["refine"] = _refine(state, cfg, src, work, progress)
    record["seconds"] = time.perf_counter() - t0
    state.finish("sr_aware", record)
    run.append("sr_aware")


def _refine(state: JobState, cfg: ArchivalConfig, src: Path, work: Path, progress: bool) -> dict[str, Any]:
    """Fine-tune ``refine_iters`` more iterations on the SR-aware stream, from the fine-tuned model."""
    folder = work / "sr_aware"
    shutil.rmtree(folder / "refine", ignore_errors=True)  # made for an older SR-aware stream
    _decode_lossless(state, work / SR_AWARE_NAME, folder / DECODED_NAME)
    result = finetune_mod.finetune_video(
        cfg.model, folder / DECODED_NAME, src, folder / "refine",
        replace(cfg.finetune, max_iters=cfg.sr_aware.refine_iters),
        base_checkpoint=work / state.stage("finetune")["checkpoint"], scale=cfg.codec.scale,
        eval_max_seq_len=cfg.restore.max_seq_len, eval_overlap=cfg.restore.overlap, progress=progress,
        resume=False,
    )  # fmt: skip
    return {"checkpoint": str(result.checkpoint.relative_to(work)), "stats": result.stats}


def _stage_package(
    state: JobState, cfg: ArchivalConfig, src: Path, out: Path, work: Path, run: list[str]
) -> dict[str, Any]:
    """Encode the model (delta/full, dtype, compression) and write the archive atomically."""
    stale = state.data.pop("package_tmp", None)
    if stale:
        shutil.rmtree(stale, ignore_errors=True)
    t0 = time.perf_counter()
    ft, sra = state.stage("finetune"), state.stage("sr_aware")
    trained = sra["refine"] if sra and sra.get("refine") else ft  # the model refined on the final stream
    state_dict = read_state_dict(work / trained["checkpoint"])
    base = ft["base"]
    base_state = read_state_dict(cfg.base_checkpoint) if cfg.base_checkpoint is not None else None
    init_state = _reference_init_state(cfg)
    data, summary = encode_model(
        state_dict, cfg.storage, base_state, base["sha256"] if base else None, init_state
    )
    if "init_reference" in summary:  # what restore regenerates: this seed's init under this torch
        summary["init_reference"].update(seed=cfg.finetune.seed, torch=torch.__version__.split("+")[0])
    probe = state.stage("probe")
    timings = {s: round(float(state.stage(s)["seconds"]), 3) for s in STAGES[:-1] if state.stage(s)}
    manifest = {
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tool": tool_record(),
        "source": {"name": src.name, "sha256": probe["sha256"], **probe["info"]},
        "lr": _lr_manifest(state),
        "model": {
            "member": cfg.storage.member_name,
            "config": stored_model_config(cfg.model),
            "storage": summary,
            "base_checkpoint": base,
            "base_allow_extra_keys": cfg.base_allow_extra_keys,
        },
        "settings": cfg.to_dict(),
        "restore_backend": restore_backend(),  # the kernel variant restores follow
        "finetune": ft["stats"],
        "timings": timings,
    }
    manifest["audio"], audio_files = _audio_manifest(state)
    tmp = out.with_name(f"{out.name}.tmp-{secrets.token_hex(4)}")
    state.data["package_tmp"] = str(tmp)
    state.save()
    timings["package"] = round(time.perf_counter() - t0, 3)
    roles = {LR_NAME: "lr_bitstream", cfg.storage.member_name: "model"} | dict.fromkeys(audio_files, "audio")
    lr_file = work / (SR_AWARE_NAME if state.stage("sr_aware") else LR_NAME)
    files = {LR_NAME: lr_file, **audio_files}
    write_archive(out, files, {cfg.storage.member_name: data}, roles, manifest, [src], tmp)
    state.data.pop("package_tmp", None)
    report = verify_archive(out)
    state.finish("package", {"archive": str(out.resolve()), "seconds": timings["package"]})
    run.append("package")
    return report.manifest


def _lr_manifest(state: JobState) -> dict[str, Any]:
    """The manifest's ``lr``: the stream's shape and command; with SR-aware encoding its segments too."""
    enc, sra = state.stage("encode_lr"), state.stage("sr_aware")
    lr = {k: enc[k] for k in ("width", "height", "num_frames", "pix_fmt", "command")} | {"member": LR_NAME}
    if sra:
        sr_record = {k: v for k, v in sra["sr_aware"].items() if k != "segments"}
        sr_record["refine"] = sra["refine"]["stats"] if sra.get("refine") else None
        lr |= {"command": sra["command"], "segments": sra["segments"], "sr_aware": sr_record}
    return lr


def _reference_init_state(cfg: ArchivalConfig) -> dict[str, Any] | None:
    """The seeded initialisation restore regenerates (runs from scratch with ``reference_init``), else None.

    Built from the stored model config (no external SPyNet weights), so tensors that started from a
    file differ from it and are stored.
    """
    if cfg.base_checkpoint is not None or not cfg.storage.reference_init:
        return None
    state, _ = finetune_mod.initial_state(stored_model_config(cfg.model), None, False, cfg.finetune.seed)
    return state


def tool_record() -> dict[str, str]:
    """The manifest's ``tool``: this package's name and version (``basicvsr_archival.__version__``)."""
    import basicvsr_archival

    return {"name": "basicvsr_archival", "version": str(getattr(basicvsr_archival, "__version__", "unknown"))}
