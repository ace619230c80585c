"""Common base of the clip datasets: path resolution, pipeline building, clip checks and hold-out splits.

Every dataset item (before the pipeline) is a dict with ``key``, ``lq_path`` / ``gt_path`` (frame
file lists, ``lq_path=None`` for GT-only data degraded on the fly), ``sequence_length`` and
``num_input_frames``; the transforms in :mod:`.transforms` turn it into the model's data contract.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmengine.dataset import BaseDataset

from basicvsr_archival.registry import TRANSFORMS

from .io import check_same_frame_counts, image_size, list_frames

__all__ = ["BaseClipDataset", "clip_info", "split_frame_ranges"]


def _build_pipeline(pipeline: Sequence[dict | Callable] | None) -> list[Callable]:
    """Build dict transforms with this package's ``TRANSFORMS`` (works with or without a Runner scope)."""
    return [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in (pipeline or [])]


def clip_info(
    key: str,
    lq_dir: Path | None,
    gt_dir: Path | None,
    scale: int,
    num_input_frames: int | None,
    check_sizes: bool = True,
) -> dict[str, Any]:
    """Item dict of one clip from its LR and/or GT frame folders, with count and size checks.

    Frames are paired by natural filename order; counts must match and (``check_sizes``) the first GT
    frame must be exactly ``scale`` times the first LR frame.
    """
    gt = [str(p) for p in list_frames(gt_dir, "GT")] if gt_dir is not None else None
    lq = [str(p) for p in list_frames(lq_dir, "LR")] if lq_dir is not None else None
    if gt is None and lq is None:
        raise ValueError(f"clip {key!r}: neither an LR nor a GT folder was given")
    if lq is not None and gt is not None:
        check_same_frame_counts(lq, gt, str(lq_dir), str(gt_dir))
        if check_sizes:
            (lh, lw), (gh, gw) = image_size(lq[0]), image_size(gt[0])
            if (gh, gw) != (lh * scale, lw * scale):
                raise ValueError(
                    f"mismatched sizes: GT {gt[0]} is {gh}x{gw} but LR {lq[0]} is {lh}x{lw} "
                    f"(expected x{scale})"
                )
    length = len(gt if gt is not None else lq)
    return dict(
        key=key,
        lq_path=lq,
        gt_path=gt,
        sequence_length=length,
        num_input_frames=num_input_frames,
    )


def split_frame_ranges(
    num_frames: int,
    clip_length: int,
    test_mode: bool,
    val_ranges: Sequence[Sequence[int]] | None = None,
    num_val_frames: int = 0,
    min_length: int = 1,
    where: str = "video",
) -> list[tuple[int, int]]:
    """Cut frames ``[0, num_frames)`` into ``[start, end)`` clips, keeping held-out frames apart.

    1. Held-out (validation) ranges are ``val_ranges`` or, if ``num_val_frames > 0``, the last
       ``num_val_frames`` frames; with neither, nothing is held out.
    2. ``test_mode``: the held-out ranges (or, with none, the whole sequence) cut into ``clip_length``
       pieces; otherwise the remaining frames, cut at held-out ranges so no training clip contains a
       validation frame.
    3. Pieces shorter than ``min_length`` (e.g. ``num_input_frames``) are dropped; none left raises.
    """
    if num_frames < 1:
        raise ValueError(f"{where}: holds no frames")
    if clip_length < 1:
        raise ValueError(f"{where}: clip_length must be >= 1, got {clip_length}")
    if val_ranges is None and num_val_frames > 0:
        if num_val_frames >= num_frames:
            raise ValueError(
                f"{where}: num_val_frames={num_val_frames} leaves no training frames of {num_frames}"
            )
        val_ranges = [(num_frames - num_val_frames, num_frames)]
    held = sorted((int(s), int(e)) for s, e in (val_ranges or []))
    for s, e in held:
        if not 0 <= s < e <= num_frames:
            raise ValueError(f"{where}: held-out range [{s}, {e}) is outside [0, {num_frames})")
    if test_mode:
        segments = held or [(0, num_frames)]
    else:
        segments, cursor = [], 0
        for s, e in held:
            if s > cursor:
                segments.append((cursor, s))
            cursor = max(cursor, e)
        if cursor < num_frames:
            segments.append((cursor, num_frames))
    clips = []
    for s, e in segments:
        for start in range(s, e, clip_length):
            end = min(start + clip_length, e)
            if end - start >= min_length:
                clips.append((start, end))
    if not clips:
        mode = "validation" if test_mode else "training"
        raise ValueError(
            f"{where}: no {mode} clip of at least {min_length} frames (clip_length {clip_length})"
        )
    return clips


class BaseClipDataset(BaseDataset):
    """mmengine ``BaseDataset`` whose pipeline is built with this package's ``TRANSFORMS`` registry.

    Subclasses implement ``load_data_list``; relative folders are resolved against ``data_root``
    with :meth:`resolve`.
    """

    def __init__(
        self,
        pipeline: Sequence[dict | Callable] | None = None,
        data_root: str = "",
        test_mode: bool = False,
        num_input_frames: int | None = None,
        scale: int = 4,
        check_sizes: bool = True,
        lazy_init: bool = False,
        serialize_data: bool = True,
        metainfo: dict | None = None,
    ) -> None:
        self.num_input_frames = num_input_frames
        self.scale = int(scale)
        self.check_sizes = check_sizes
        super().__init__(
            data_root=data_root,
            pipeline=_build_pipeline(pipeline),
            test_mode=test_mode,
            lazy_init=lazy_init,
            serialize_data=serialize_data,
            metainfo=metainfo,
        )

    def resolve(self, path: str | os.PathLike | None) -> Path | None:
        """``path`` joined to ``data_root`` unless it is absolute (``None`` stays ``None``)."""
        if path is None:
            return None
        p = Path(path)
        return p if p.is_absolute() or not self.data_root else Path(self.data_root) / p
