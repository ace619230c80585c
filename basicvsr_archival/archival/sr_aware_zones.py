"""SR-aware encoding with x264 zones (``codec.sr_aware.mode="zones"``): one encode, a CRF per segment.

The ``segments`` mode (:mod:`.sr_aware`) cuts the stream into closed GOPs of ``gop`` frames, so every
segment starts with an IDR frame; on short segments or small frames those key frames cost more than
the allocation saves. This mode keeps the ordinary stream (the config's GOP, open GOPs, scene cuts):

1. ladder: the LR stream is encoded whole at every CRF of the ladder (:func:`.codec.encode_lr`);
   a segment's bytes at a CRF are the payload bytes of its frames' packets (frames in display order,
   packets matched by timestamp) and its post-SR PSNR the mean over its frames of the whole stream's
   restoration (as a restore does: the model's chunks) against the source;
2. allocation: :func:`.sr_aware.allocate` on that table (the uniform choice of a rung is exactly that
   rung's stream, so the default budget, the payload of the uniform stream at the config's CRF, is
   on the table);
3. the final stream is one x264 encode with ``zones=s0,e0,crf=c0/s1,e1,crf=c1/...`` (x264 re-applies the
   CRF at each zone start; a uniform choice is encoded without zones: that rung's stream). P/B frames
   reference across segment borders, so its bytes and quality differ from the table's (a segment's key
   frame feeds the next ones; measured on a 32-frame clip: -0.1 to -0.35 dB), so the table is a model,
   not a measurement, of the final stream. With a budget, each encode's own per-segment bytes replace
   the table's bytes of the rungs it used, and the allocation is redone on that corrected table with its
   goal scaled by ``budget / payload`` (at most ``MAX_TRIES`` encodes; it stops early when a stream
   fills the budget to within 2 %). The stream
   kept is the one within the budget with the highest predicted PSNR, unless the best uniform rung
   within the budget predicts more (its table entry is exact: its stream is on the ladder).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from basicvsr_archival.utils.ffmpeg import PathLike
from basicvsr_archival.utils.video_read import open_video

from .codec import CodecSettings, EncodeResult, encode_lr
from .sr_aware import (
    Ladder,
    LadderTable,
    SrAwareResult,
    allocate,
    checked_result,
    post_sr_psnr,
    stream_payload,
)
from .sr_aware_settings import SrAwareSettings

MAX_TRIES = 6  # encodes to fit a byte budget
FILL = 0.98  # a stream within 2 % under the budget is kept


def frame_bytes(path: PathLike) -> list[int]:
    """Payload bytes of every frame of the first video stream, in display order (packets by timestamp)."""
    container, stream = open_video(path)
    try:
        pkts = [(p.pts if p.pts is not None else p.dts, p.size) for p in container.demux(stream) if p.size]
    finally:
        container.close()
    return [size for _, size in sorted(pkts, key=lambda t: t[0])]


def zones_value(gop: int, frames: int, crfs: list[int]) -> str:
    """x264's ``zones`` value: ``start,end,crf=C`` per segment (inclusive frame numbers), joined by ``/``."""
    return "/".join(f"{s * gop},{min(frames, (s + 1) * gop) - 1},crf={c}" for s, c in enumerate(crfs))


def with_zones(codec: CodecSettings, zones: str) -> CodecSettings:
    """``codec`` with ``zones`` added to its ``-x264-params`` (merged into one given in ``extra_args``)."""
    extra = list(codec.extra_args)
    if "-x264-params" in extra:
        i = extra.index("-x264-params") + 1
        extra[i] = f"{extra[i]}:zones={zones}"
    else:
        extra += ["-x264-params", f"zones={zones}"]
    return replace(codec, extra_args=tuple(extra))


def build_zone_ladder(
    src: PathLike,
    codec: CodecSettings,
    settings: SrAwareSettings,
    model: torch.nn.Module,
    folder: PathLike,
    max_seq_len: int | None = None,
    overlap: int | None = None,
) -> Ladder:
    """Step 1: the whole stream at every ladder CRF (``FOLDER/c<crf>.mp4``) and the per-segment table.

    Called by :func:`.sr_aware.build_ladder`, which has checked ``codec`` against ``settings``.
    """
    out, gop = Path(folder), settings.gop
    out.mkdir(parents=True, exist_ok=True)
    files, cols_b, cols_q, t_enc, t_sr = {}, [], [], 0.0, 0.0
    for crf in settings.ladder(codec):
        t0 = time.perf_counter()
        enc = encode_lr(src, out / f"c{crf}.mp4", replace(codec, crf=crf, bitrate=None))
        t1 = time.perf_counter()
        per_frame = post_sr_psnr(model, [enc.dst], src, max_seq_len, overlap)
        t_enc, t_sr = t_enc + t1 - t0, t_sr + time.perf_counter() - t1
        cols_b.append(segment_bytes(enc.dst, gop))
        cols_q.append([float(np.mean(per_frame[s : s + gop])) for s in range(0, len(per_frame), gop)])
        files[crf] = [enc.dst]
    n = len(per_frame)
    frames = tuple(min(gop, n - s) for s in range(0, n, gop))
    table = LadderTable(tuple(sorted(files)), frames, tuple(zip(*cols_b)), tuple(zip(*cols_q)))
    return Ladder(files, table, {"ladder_encode": t_enc, "ladder_measure": t_sr})


def _encode_choice(
    src: Path, dst: Path, codec: CodecSettings, table: LadderTable, choice: list[int], gop: int
) -> tuple[EncodeResult, int]:
    """Encode the LR stream with a CRF zone per segment (rung ``choice[s]``); (result, payload bytes)."""
    crfs = [table.crfs[j] for j in choice]
    zoned = with_zones(replace(codec, crf=crfs[0], bitrate=None), zones_value(gop, sum(table.frames), crfs))
    enc = encode_lr(src, dst, zoned if len(set(crfs)) > 1 else replace(codec, crf=crfs[0], bitrate=None))
    return enc, stream_payload(dst).bytes


def segment_bytes(path: PathLike, gop: int) -> list[int]:
    """Payload bytes of every segment of ``gop`` frames of a stream (its frames' packets, display order)."""
    sizes = frame_bytes(path)
    return [int(sum(sizes[s : s + gop])) for s in range(0, len(sizes), gop)]


def corrected_table(table: LadderTable, choice: list[int], seg_bytes: list[int]) -> LadderTable:
    """``table`` with the bytes of rung ``choice[s]`` of every segment ``s`` replaced by ``seg_bytes[s]``."""
    rows = [list(r) for r in table.bytes]
    for s, (j, b) in enumerate(zip(choice, seg_bytes, strict=True)):
        rows[s][j] = b
    return replace(table, bytes=tuple(tuple(r) for r in rows))


def _fit_budget(
    src: Path, dst: Path, codec: CodecSettings, table: LadderTable, budget: int, gop: int
) -> tuple[list[int], EncodeResult, int]:
    """Step 3 with a budget: allocate on a table corrected by each zoned stream's own segment bytes,
    the allocation's goal scaled by ``budget / payload`` after each encode.

    The kept stream is the one within ``budget`` with the highest predicted PSNR, or the best uniform
    rung within it (exact: its stream is on the ladder) when that predicts more.
    """
    n, model, best, tried, last, goal = len(table.frames), table, None, set(), None, budget
    for _ in range(MAX_TRIES):
        choice, _ = allocate(model, goal, None)
        if tuple(choice) in tried:
            break
        tried.add(tuple(choice))
        enc, payload = _encode_choice(src, dst, codec, table, choice, gop)
        last, q = choice, table.mean_psnr(choice)
        if payload <= budget and (best is None or q > best[2]):
            best = (choice, payload, q)
        if FILL * budget <= payload <= budget:
            break
        model = corrected_table(model, choice, segment_bytes(dst, gop))
        goal = max(1, int(goal * budget / payload) - (payload > budget))
    fits = [j for j in range(len(table.crfs)) if table.total_bytes([j] * n) <= budget]
    j = max(fits or [len(table.crfs) - 1], key=lambda j: table.mean_psnr([j] * n))
    if best is None or table.mean_psnr([j] * n) > best[2]:
        best = ([j] * n, table.total_bytes([j] * n), table.mean_psnr([j] * n))
    if best[0] != last:
        enc, _ = _encode_choice(src, dst, codec, table, best[0], gop)
    return best[0], enc, stream_payload(dst).bytes


def write_zones(
    src: PathLike,
    dst: PathLike,
    codec: CodecSettings,
    ladder: Ladder,
    budget: int | None,
    target_psnr: float | None,
    gop: int,
) -> SrAwareResult:
    """Steps 2-3: allocate, encode once with zones, fit the budget (see the module docstring)."""
    t0 = time.perf_counter()
    src_path, dst_path, table = Path(src), Path(dst), ladder.table
    if budget is None:
        choice, met = allocate(table, None, target_psnr)
        enc, payload = _encode_choice(src_path, dst_path, codec, table, choice, gop)
    else:
        choice, enc, payload = _fit_budget(src_path, dst_path, codec, table, budget, gop)
        met = payload <= budget
    goal = (budget, target_psnr, met)
    return checked_result(src_path, dst_path, codec, ladder, choice, payload, goal, enc.command, gop, t0)
