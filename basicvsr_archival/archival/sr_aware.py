"""SR-aware encoding: each segment of the LR stream gets the CRF that buys the most post-SR quality per byte.

Method: the SR-aware bitrate allocation of NCS (HotStorage '23), with the greedy marginal-gain rule
of Lagrangian bit allocation over a convex hull (Shoham & Gersho, "Efficient bit allocation for an
arbitrary set of quantizers", IEEE Trans. ASSP 1988):

1. the source is cut on frame boundaries into segments of ``gop`` frames (the last may be shorter);
2. the LR stream (downscale + encode as :func:`.codec.encode_lr`: same filter graph, pixel format,
   colour tags, size and time base) is encoded once per CRF of a small ladder (``crfs`` and the
   config's CRF) with closed GOPs of exactly ``gop`` frames (an IDR at every segment start:
   ``-g/-keyint_min gop -sc_threshold 0``, forced IDRs, ``open-gop=0``) and ``stitchable=1``
   (headers that do not depend on the CRF), and split at the IDRs into one file per segment
   (ffmpeg's segment muxer, stream copy). A segment decodes on its own, so its bytes and frames are
   the same wherever it is put;
3. every ladder stream is super-resolved with the video's model, as a restore does (chunks of
   ``max_seq_len`` frames with ``overlap`` frames of context), and compared with the source: each
   segment's bytes (video payload, container excluded) and mean PSNR after SR, per CRF, form the
   ladder table (:class:`LadderTable`);
4. :func:`allocate` starts every segment at its cheapest CRF and repeatedly upgrades the segment
   whose next step on its convex hull of (bytes, PSNR) gives the largest gain
   ``ΔPSNR * frames / Δbytes`` (the video's mean PSNR per extra byte), until the byte budget
   (default: the payload bytes of the uniform encode at the config's CRF) or a target mean PSNR is
   met; a uniform rung that does better (the greedy rule can stop short of the budget) is taken
   instead, so the choice is never worse than uniform CRF on the ladder table;
5. the chosen segment files are concatenated with stream copy (concat demuxer) into one stream,
   checked for size, pixel format, decoded frame count and payload bytes.

A restore is unchanged: the stream is one ordinary H.264 stream. Measuring each segment on the
ladder stream of one CRF leaves out that neighbouring segments of other CRFs feed the recurrent
model at the segment's borders; the final stream's own post-SR quality is what a study measures.
"""

from __future__ import annotations

import itertools
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

from basicvsr_archival.evaluation.metrics import psnr
from basicvsr_archival.utils.atomic import atomic_write_text
from basicvsr_archival.utils.ffmpeg import (
    PathLike,
    VideoInfo,
    atomic_output,
    count_video_frames,
    iter_video_frames,
    probe_video,
    run_ffmpeg,
)
from basicvsr_archival.utils.video_read import open_video

from .codec import CodecSettings, build_encode_args, encode_lr
from .sr_aware_settings import PSNR_CAP, SrAwareError, SrAwareSettings


# ------------------------------------------------------------------------------------------ allocation
@dataclass(frozen=True)
class LadderTable:
    """Per segment (rows) and CRF (columns): payload bytes and mean post-SR PSNR; frames per segment."""

    crfs: tuple[int, ...]
    frames: tuple[int, ...]
    bytes: tuple[tuple[int, ...], ...]
    psnr: tuple[tuple[float, ...], ...]

    def total_bytes(self, choice: Sequence[int]) -> int:
        """Payload bytes of the stream made of rung ``choice[s]`` for every segment ``s``."""
        return sum(self.bytes[s][j] for s, j in enumerate(choice))

    def mean_psnr(self, choice: Sequence[int]) -> float:
        """Mean per-frame post-SR PSNR of that stream (segments weighted by their frames)."""
        total = sum(self.frames[s] * self.psnr[s][j] for s, j in enumerate(choice))
        return total / sum(self.frames)

    def uniform_points(self) -> list[dict[str, Any]]:
        """The closed-GOP uniform-CRF curve: one point (crf, bytes, psnr) per rung of the ladder."""
        n = len(self.frames)
        return [
            {"crf": c, "bytes": self.total_bytes([j] * n), "psnr": self.mean_psnr([j] * n)}
            for j, c in enumerate(self.crfs)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly table (lists of lists, rows = segments)."""
        return {"crfs": list(self.crfs), "frames": list(self.frames), "bytes": [list(r) for r in self.bytes],
                "psnr": [[round(p, 4) for p in r] for r in self.psnr]}  # fmt: skip


def _next_step(row_bytes: Sequence[int], row_psnr: Sequence[float], cur: int) -> tuple[int, float] | None:
    """The next rung on a segment's upper convex hull after ``cur`` and its ΔPSNR/Δbytes; None at the top."""
    best: tuple[int, float] | None = None
    for j, (b, q) in enumerate(zip(row_bytes, row_psnr)):
        db, dq = b - row_bytes[cur], q - row_psnr[cur]
        if dq <= 0 or db < 0:
            continue
        slope = math.inf if db == 0 else dq / db
        if best is None or slope > best[1] or (slope == best[1] and b < row_bytes[best[0]]):
            best = (j, slope)
    return best


def greedy_allocation(
    table: LadderTable, budget: int | None = None, target_psnr: float | None = None
) -> list[int]:
    """The greedy marginal-gain rule: a rung per segment.

    Every segment starts at its cheapest rung; each step upgrades, among the steps that still fit
    ``budget``, the segment whose next convex-hull step has the largest ``ΔPSNR * frames / Δbytes``
    (ties: the lower segment index), until no step fits (``budget``) or the mean PSNR reaches
    ``target_psnr``. Rungs under a segment's upper convex hull of (bytes, PSNR) are jumped over.
    """
    choice = [
        min(range(len(b)), key=lambda j, b=b, q=q: (b[j], -q[j])) for b, q in zip(table.bytes, table.psnr)
    ]
    total = table.total_bytes(choice)
    while target_psnr is None or table.mean_psnr(choice) < target_psnr:
        steps = []
        for s, j in enumerate(choice):
            step = _next_step(table.bytes[s], table.psnr[s], j)
            if step is None:
                continue
            extra = table.bytes[s][step[0]] - table.bytes[s][j]
            if budget is not None and total + extra > budget:
                continue
            steps.append((step[1] * table.frames[s], -s, step[0], extra))
        if not steps:
            break
        _, neg_s, rung, extra = max(steps)
        choice[-neg_s] = rung
        total += extra
    return choice


def allocate(
    table: LadderTable, budget: int | None = None, target_psnr: float | None = None
) -> tuple[list[int], bool]:
    """Rung per segment for a byte ``budget`` or a ``target_psnr``, and whether that goal was met.

    The :func:`greedy_allocation`, unless a uniform rung does better: with ``budget``, one that fits
    and gives a higher mean PSNR (the greedy rule can stop short of the budget when a step does not
    fit); with ``target_psnr``, one that reaches the target with fewer bytes. The result is thus
    never worse than uniform CRF on the ladder table.
    """
    if (budget is None) == (target_psnr is None):
        raise ValueError("allocate needs exactly one of budget / target_psnr")
    n = len(table.frames)
    candidates = [greedy_allocation(table, budget, target_psnr)]
    candidates += [[j] * n for j in range(len(table.crfs))]
    if budget is not None:
        fits = [c for c in candidates if table.total_bytes(c) <= budget] or candidates[:1]
        best = max(fits, key=lambda c: (table.mean_psnr(c), -table.total_bytes(c)))
        return best, table.total_bytes(best) <= budget
    reach = [c for c in candidates if table.mean_psnr(c) >= target_psnr] or candidates[:1]
    best = min(reach, key=lambda c: (table.total_bytes(c), -table.mean_psnr(c)))
    return best, table.mean_psnr(best) >= target_psnr


# ------------------------------------------------------------------------------------------ ladder
def segment_starts(num_frames: int, gop: int) -> list[int]:
    """First frame of every segment: ``0, gop, 2 * gop, ...`` below ``num_frames``."""
    return list(range(0, num_frames, gop))


def _ladder_args(
    info: VideoInfo, codec: CodecSettings, gop: int, crf: int, starts: Sequence[int], pattern: Path
) -> tuple[list[str], dict[str, Any]]:
    """ffmpeg arguments encoding the LR stream at ``crf`` with closed GOPs and splitting it per segment."""
    split = ",".join(str(s) for s in starts[1:]) or str(info.num_frames)
    closed = ["-keyint_min", str(gop), "-sc_threshold", "0", "-forced-idr", "1"]
    closed += ["-force_key_frames", f"expr:eq(mod(n,{gop}),0)", "-x264-params", "open-gop=0:stitchable=1"]
    segment = ["-f", "segment", "-segment_format", "mp4", "-segment_frames", split, "-reset_timestamps", "1"]
    settings = replace(
        codec, crf=crf, bitrate=None, gop=gop, extra_args=(*codec.extra_args, *closed, *segment)
    )
    return build_encode_args(info, pattern, settings)


class Payload(NamedTuple):
    """The video packets of a file: count, bytes (payload, no container), first one a key, headers."""

    frames: int
    bytes: int
    starts_with_key: bool
    extradata: bytes


def stream_payload(path: PathLike) -> Payload:
    """:class:`Payload` of the first video stream of ``path`` (demuxed, not decoded)."""
    container, stream = open_video(path)
    try:
        sizes, keys = [], []
        for pkt in container.demux(stream):
            if pkt.size > 0:
                sizes.append(pkt.size)
                keys.append(bool(pkt.is_keyframe))
        extradata = bytes(stream.codec_context.extradata or b"")
    finally:
        container.close()
    return Payload(len(sizes), sum(sizes), bool(keys and keys[0]), extradata)


def encode_ladder(
    src: PathLike, codec: CodecSettings, gop: int, crfs: Sequence[int], folder: PathLike
) -> dict[int, list[Path]]:
    """Encode the LR stream of ``src`` once per CRF, split into segment files ``FOLDER/c<crf>_<i>.mp4``.

    Every segment file must hold exactly its segment's frames, start with a key frame and carry the
    same stream headers (SPS/PPS) as every other, so that any choice concatenates into one stream.
    """
    info, out = probe_video(src), Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    starts = segment_starts(info.num_frames, gop)
    counts = [min(gop, info.num_frames - s) for s in starts]
    ladder, headers = {}, set()
    for crf in crfs:
        pattern = Path(str(out).replace("%", "%%")) / f"c{crf}_%05d.mp4"
        args, _ = _ladder_args(info, codec, gop, crf, starts, pattern)
        run_ffmpeg(args, f"SR-aware ladder encode of {src} at CRF {crf}")
        files = [out / f"c{crf}_{i:05d}.mp4" for i in range(len(starts))]
        got = [stream_payload(f) if f.is_file() else Payload(0, 0, False, b"") for f in files]
        if [g.frames for g in got] != counts or not all(g.starts_with_key for g in got):
            raise SrAwareError(
                f"{src}: CRF {crf} segments hold {[g.frames for g in got]} frames, want {counts} from IDRs"
            )
        headers.update(g.extradata for g in got)
        ladder[crf] = files
    if len(headers) != 1:
        raise SrAwareError(f"{src}: the ladder's segments carry {len(headers)} different stream headers")
    return ladder


def post_sr_psnr(
    model: torch.nn.Module,
    lr_files: Sequence[PathLike],
    reference: PathLike,
    max_seq_len: int | None = None,
    overlap: int | None = None,
) -> list[float]:
    """Per-frame PSNR (dB, RGB, capped at ``PSNR_CAP``) of the model's restoration of the concatenated files.

    The frames are restored as a restore does (:func:`~basicvsr_archival.apis.restore_video_frames`
    with ``max_seq_len`` / ``overlap``) and compared with ``reference``'s frames.
    """
    from basicvsr_archival.apis.inference import restore_video_frames

    lq = itertools.chain.from_iterable(iter_video_frames(f) for f in lr_files)
    out = restore_video_frames(model, lq, max_seq_len=max_seq_len, progress=False, overlap=overlap)
    try:
        return [min(psnr(o, g), PSNR_CAP) for o, g in zip(out, iter_video_frames(reference), strict=True)]
    except ValueError as exc:
        raise SrAwareError(f"{reference}: restored frames do not pair with the reference ({exc})") from None


def measure_ladder(
    model: torch.nn.Module,
    ladder: Mapping[int, Sequence[Path]],
    reference: PathLike,
    gop: int,
    max_seq_len: int | None = None,
    overlap: int | None = None,
) -> LadderTable:
    """The ladder table: payload bytes and mean post-SR PSNR of every segment at every CRF."""
    crfs = sorted(ladder)
    columns_b, columns_q = [], []
    for crf in crfs:
        per_frame = post_sr_psnr(model, ladder[crf], reference, max_seq_len, overlap)
        chunks = [per_frame[s : s + gop] for s in range(0, len(per_frame), gop)]
        columns_q.append([sum(c) / len(c) for c in chunks])
        columns_b.append([stream_payload(f).bytes for f in ladder[crf]])
    frames = tuple(min(gop, len(per_frame) - s) for s in range(0, len(per_frame), gop))
    return LadderTable(
        crfs=tuple(crfs),
        frames=frames,
        bytes=tuple(zip(*columns_b)),
        psnr=tuple(zip(*columns_q)),
    )


def _concat_line(path: Path) -> str:
    """One concat-demuxer line naming ``path`` (single quotes escaped as the demuxer reads them)."""
    return "file '" + str(path.resolve()).replace("'", "'\\''") + "'"


def concat_segments(
    files: Sequence[Path], dst: PathLike, list_file: Path, forbid: Sequence[PathLike] = ()
) -> list[str]:
    """Concatenate segment files into ``dst`` with stream copy (atomic); returns the ffmpeg command."""
    atomic_write_text(list_file, "ffconcat version 1.0\n" + "".join(_concat_line(f) + "\n" for f in files))
    with atomic_output(dst, forbid=[*forbid, *files]) as tmp:
        args = ["-y", "-f", "concat", "-safe", "0", "-auto_convert", "0", "-i", str(list_file)]
        args += ["-map", "0:v:0", "-c", "copy"]
        proc = run_ffmpeg(
            [*args, "-fflags", "+bitexact", str(tmp)], f"concatenating {len(files)} segments into {dst}"
        )
    return [str(a) for a in proc.args]


# ------------------------------------------------------------------------------------------ the encode
@dataclass(frozen=True)
class SrAwareResult:
    """The SR-aware LR stream: its file, the ladder table, the rung chosen per segment, the goal."""

    dst: Path
    bytes: int
    stream_bytes: int
    num_frames: int
    width: int
    height: int
    pix_fmt: str
    gop: int
    choice: tuple[int, ...]
    table: LadderTable
    budget: int | None
    target_psnr: float | None
    goal_met: bool
    command: list[str]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def crfs(self) -> list[int]:
        """The CRF of every segment."""
        return [self.table.crfs[j] for j in self.choice]

    @property
    def predicted_psnr(self) -> float:
        """Mean post-SR PSNR the ladder table predicts for the stream (segments restored on their own)."""
        return self.table.mean_psnr(self.choice)

    def segments(self) -> list[dict[str, Any]]:
        """Per segment: first frame, frames, CRF, payload bytes, predicted post-SR PSNR."""
        t = self.table
        return [
            {
                "start": s * self.gop,
                "frames": t.frames[s],
                "crf": t.crfs[j],
                "bytes": t.bytes[s][j],
                "psnr": round(t.psnr[s][j], 4),
            }
            for s, j in enumerate(self.choice)
        ]

    def to_dict(self) -> dict[str, Any]:
        """The manifest's record (``lr.sr_aware``): segments, goal, ladder and its uniform curve."""
        return {
            "gop": self.gop,
            "segments": self.segments(),
            "stream_bytes": self.stream_bytes,
            "budget": self.budget,
            "target_psnr": self.target_psnr,
            "goal_met": self.goal_met,
            "predicted_psnr": round(self.predicted_psnr, 4),
            "ladder": self.table.to_dict(),
            "uniform_closed_gop": self.table.uniform_points(),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def _budget(
    src: Path, codec: CodecSettings, settings: SrAwareSettings, uniform: PathLike | None, folder: Path
) -> int | None:
    """The byte budget: the setting, else the payload of the uniform encode (``uniform`` or made here)."""
    if settings.target_psnr is not None:
        return None
    if settings.budget is not None:
        return settings.budget
    if uniform is None:
        uniform = encode_lr(src, folder / "uniform.mp4", codec).dst
    return stream_payload(uniform).bytes


def _check_stream(dst: Path, expected: Mapping[str, Any], payload: int) -> VideoInfo:
    """Probe the concatenated stream; :class:`SrAwareError` unless it has the expected shape and bytes."""
    got = probe_video(dst)
    pix_fmt = "yuv" + got.pix_fmt[4:] if got.pix_fmt.startswith("yuvj") else got.pix_fmt  # as encode_lr
    actual = {"width": got.width, "height": got.height, "pix_fmt": pix_fmt}
    actual |= {"num_frames": count_video_frames(dst, decode=True), "payload": stream_payload(dst).bytes}
    want = {k: expected[k] for k in ("width", "height", "pix_fmt", "num_frames")} | {"payload": payload}
    bad = [f"{k} {actual[k]} != {want[k]}" for k in want if actual[k] != want[k]]
    if bad:
        raise SrAwareError(f"{dst}: SR-aware stream is not the chosen segments ({'; '.join(bad)})")
    return got


@dataclass(frozen=True)
class Ladder:
    """The ladder of one video: segment files per CRF, their table, and the seconds it took."""

    files: dict[int, list[Path]]
    table: LadderTable
    seconds: dict[str, float]


def build_ladder(
    src: PathLike,
    codec: CodecSettings,
    settings: SrAwareSettings,
    model: torch.nn.Module,
    folder: PathLike,
    max_seq_len: int | None = None,
    overlap: int | None = None,
) -> Ladder:
    """Steps 2-3 of the method: encode the CRF ladder into ``folder`` and measure it with ``model``.

    ``settings.mode == "zones"``: the whole-stream ladder of :mod:`.sr_aware_zones` instead.
    """
    settings.check_codec(codec)
    if settings.mode == "zones":
        from .sr_aware_zones import build_zone_ladder  # it builds on this module

        return build_zone_ladder(src, codec, settings, model, folder, max_seq_len, overlap)
    t0 = time.perf_counter()
    files = encode_ladder(src, codec, settings.gop, settings.ladder(codec), folder)
    t1 = time.perf_counter()
    table = measure_ladder(model, files, src, settings.gop, max_seq_len, overlap)
    return Ladder(files, table, {"ladder_encode": t1 - t0, "ladder_measure": time.perf_counter() - t1})


def write_allocation(
    src: PathLike,
    dst: PathLike,
    codec: CodecSettings,
    settings: SrAwareSettings,
    ladder: Ladder,
    budget: int | None,
    list_file: PathLike,
) -> SrAwareResult:
    """Steps 4-5: allocate a rung per segment for ``budget`` (else ``settings.target_psnr``), write, check.

    ``settings.mode == "zones"``: one encode with x264 zones (:func:`.sr_aware_zones.write_zones`).
    """
    target_psnr, gop = None if budget is not None else settings.target_psnr, settings.gop
    if settings.mode == "zones":
        from .sr_aware_zones import write_zones  # it builds on this module

        return write_zones(src, dst, codec, ladder, budget, target_psnr, gop)
    t0 = time.perf_counter()
    src_path, dst_path, table = Path(src), Path(dst), ladder.table
    choice, met = allocate(table, budget, target_psnr)
    chosen = [ladder.files[table.crfs[j]][s] for s, j in enumerate(choice)]
    command = concat_segments(chosen, dst_path, Path(list_file), forbid=[src_path])
    payload, goal = table.total_bytes(choice), (budget, target_psnr, met)
    return checked_result(src_path, dst_path, codec, ladder, choice, payload, goal, command, gop, t0)


def checked_result(
    src: Path, dst: Path, codec: CodecSettings, ladder: Ladder, choice: Sequence[int], payload: int,
    goal: tuple[int | None, float | None, bool], command: list[str], gop: int, t0: float,
) -> SrAwareResult:  # fmt: skip
    """Check the written stream (:func:`_check_stream`) and describe it; ``goal``: (budget, target, met)."""
    _, expected = build_encode_args(probe_video(src), dst, codec)
    got = _check_stream(dst, expected, payload)
    return SrAwareResult(
        dst=dst,
        bytes=dst.stat().st_size,
        stream_bytes=payload,
        num_frames=expected["num_frames"],
        width=got.width,
        height=got.height,
        pix_fmt=expected["pix_fmt"],
        gop=gop,
        choice=tuple(choice),
        table=ladder.table,
        budget=goal[0],
        target_psnr=goal[1],
        goal_met=goal[2],
        command=command,
        seconds={**ladder.seconds, "allocate_concat": time.perf_counter() - t0},
    )


def sr_aware_encode(
    src: PathLike,
    dst: PathLike,
    codec: CodecSettings,
    settings: SrAwareSettings,
    model: torch.nn.Module,
    work_dir: PathLike,
    max_seq_len: int | None = None,
    overlap: int | None = None,
    uniform: PathLike | None = None,
    keep_ladder: bool = False,
) -> SrAwareResult:
    """Encode ``src``'s LR stream into ``dst`` with a CRF per segment chosen by post-SR quality per byte.

    ``model`` restores the ladder (the video's or cluster's model, trained on the uniform stream);
    ``max_seq_len`` / ``overlap``: the restore's chunks. The budget defaults to the payload of
    ``uniform`` (the uniform encode at ``codec``'s CRF; encoded in ``work_dir`` when None). The
    ladder's segment files live in ``WORK_DIR/ladder`` and are removed at the end unless ``keep_ladder``.
    """
    settings.check_codec(codec)
    folder = Path(work_dir) / "ladder"
    shutil.rmtree(folder, ignore_errors=True)  # segment files of an earlier, interrupted run
    ladder = build_ladder(src, codec, settings, model, folder, max_seq_len, overlap)
    budget = _budget(Path(src), codec, settings, uniform, folder)
    res = write_allocation(src, dst, codec, settings, ladder, budget, folder / "concat.txt")
    if not keep_ladder:
        shutil.rmtree(folder, ignore_errors=True)
    return res
