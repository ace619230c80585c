"""Training / validation clips read straight from video files with PyAV.

Either an LR/GT pair of videos (same frame count, GT = ``scale`` x LR size) or a GT video alone, whose
LR frames are made on the fly by the ``Degrade`` transform (MATLAB bicubic ``imresize``, the "BI"
degradation, or "BD"). Frames are decoded by seeking to the key frame before the clip and decoding
forward (frame index from the presentation time, exact for constant-frame-rate videos); short GOPs
(or extracting frames with ``tools/data/extract_frames.py``) make random clips cheaper.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import numpy as np

from basicvsr_archival.registry import DATASETS, TRANSFORMS
from basicvsr_archival.utils.ffmpeg import iter_video_frames, probe_video

from .base import BaseClipDataset, split_frame_ranges

__all__ = ["LoadVideoFrames", "VideoFileDataset", "read_video_frames"]


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB uint8 array of a decoded frame, converted as ``utils.ffmpeg.iter_video_frames`` does."""
    if frame.format.is_rgb:
        return frame.to_ndarray(format="rgb24")
    src_range = "JPEG" if int(frame.color_range or 0) == 2 else "MPEG"
    return frame.reformat(format="rgb24", src_color_range=src_range, dst_color_range="JPEG").to_ndarray()


def _seek_and_decode(path: Path, wanted: list[int]) -> dict[int, np.ndarray]:
    """Frames ``wanted`` (sorted) found by seeking; empty or partial when timestamps do not allow it."""
    found: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: contains no video stream")
        stream = container.streams.video[0]
        fps, tb = stream.average_rate or stream.guessed_rate, stream.time_base
        if fps is None or tb is None:
            return found
        start_time = stream.start_time or 0
        container.seek(int(start_time + wanted[0] / (float(fps) * float(tb))), backward=True, stream=stream)
        targets = set(wanted)
        for n, frame in enumerate(container.decode(stream)):
            if frame.pts is None:
                return {}
            idx = round(float((frame.pts - start_time) * tb * fps))
            if n == 0 and idx > wanted[0]:
                return {}  # landed after the first wanted frame
            if idx in targets:
                found[idx] = _to_rgb(frame)
            if idx >= wanted[-1]:
                break
    return found


def read_video_frames(path: str | os.PathLike, indices: Sequence[int]) -> list[np.ndarray]:
    """RGB uint8 frames ``indices`` (0-based, any order, repeats allowed) of the first video stream.

    1. Seek to the key frame at or before the earliest wanted frame (time ``index / fps``).
    2. Decode forward; a frame's index is ``round((pts - start_time) * time_base * fps)``.
    3. If the stream has no timestamps, or seeking lands late or misses frames, decode sequentially
       from the start (``utils.ffmpeg.iter_video_frames``, frame-exact) instead.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: video file not found")
    wanted = sorted({int(i) for i in indices})
    if not wanted or wanted[0] < 0:
        raise ValueError(f"{p}: invalid frame indices {list(indices)}")
    found = _seek_and_decode(p, wanted) if wanted[0] > 0 else {}
    if len(found) < len(wanted):
        found, targets = {}, set(wanted)
        for idx, rgb in enumerate(iter_video_frames(p, start=wanted[0]), start=wanted[0]):
            if idx in targets:
                found[idx] = rgb
            if idx >= wanted[-1]:
                break
    missing = [i for i in wanted if i not in found]
    if missing:
        raise IndexError(f"{p}: frames {missing} not found (video is shorter)")
    return [found[int(i)] for i in indices]


@TRANSFORMS.register_module()
class LoadVideoFrames:
    """Decode ``results['frame_indices']`` of ``results[f'{key}_video']`` into RGB float32 [0, 1] frames."""

    def __init__(self, key: str = "gt") -> None:
        self.key = key

    def __call__(self, results: dict) -> dict:
        """Load the frames into ``results[key]``."""
        path = results.get(f"{self.key}_video")
        if not path:
            raise KeyError(f"LoadVideoFrames: clip {results.get('key')!r} has no {self.key}_video")
        indices = results.get("frame_indices")
        if indices is None:
            offset, length = int(results.get("frame_offset", 0)), int(results["sequence_length"])
            indices = list(range(offset, offset + length))
        frames = read_video_frames(path, indices)
        results[self.key] = [f.astype(np.float32) / 255.0 for f in frames]
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r})"


def _as_list(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str | os.PathLike) else list(value)


@DATASETS.register_module()
class VideoFileDataset(BaseClipDataset):
    """Clips of one or more video files; LR from paired LR videos or degraded on the fly from the GT.

    * ``gt_videos``: a path or list of paths; ``lq_videos``: the matching LR videos or ``None``;
    * each video is cut into ``clip_length`` clips with optional held-out frames (``val_ranges`` /
      ``num_val_frames``, as :class:`~.clips.VideoClipsDataset`; the same ranges for every video);
    * LR/GT pairs must have the same frame count and GT = ``scale`` x LR size (checked with
      ``probe_video``); item keys are ``{video stem}/{start:08d}``.

    Pipeline: ``GenerateSegmentIndices`` -> ``LoadVideoFrames(key='gt')`` -> ``LoadVideoFrames(key='lq')``
    or ``Degrade`` -> crops / flips -> ``PackInputs``.
    """

    def __init__(
        self,
        gt_videos: str | Sequence[str],
        lq_videos: str | Sequence[str] | None = None,
        clip_length: int = 30,
        num_input_frames: int | None = None,
        val_ranges: Sequence[Sequence[int]] | None = None,
        num_val_frames: int = 0,
        pipeline: Sequence[dict | Callable] | None = None,
        data_root: str = "",
        test_mode: bool = False,
        scale: int = 4,
        check_sizes: bool = True,
        **kwargs,
    ) -> None:
        self.gt_videos, self.lq_videos = _as_list(gt_videos), _as_list(lq_videos)
        self.clip_length, self.val_ranges, self.num_val_frames = (
            int(clip_length),
            val_ranges,
            int(num_val_frames),
        )
        super().__init__(pipeline, data_root, test_mode, num_input_frames, scale, check_sizes, **kwargs)

    def load_data_list(self) -> list[dict]:
        """One item per clip of every video."""
        gts = [self.resolve(v) for v in self.gt_videos or []]
        if not gts:
            raise ValueError("VideoFileDataset: gt_videos is empty")
        lqs = [self.resolve(v) for v in self.lq_videos] if self.lq_videos is not None else [None] * len(gts)
        if len(lqs) != len(gts):
            raise ValueError(f"VideoFileDataset: {len(lqs)} LR videos for {len(gts)} GT videos")
        items = []
        for gt, lq in zip(gts, lqs):
            for v in (gt, lq):
                if v is not None and not v.is_file():
                    raise FileNotFoundError(f"{v}: video file not found")
            gt_info = probe_video(gt)
            num_frames = gt_info.num_frames
            if lq is not None:
                lq_info = probe_video(lq)
                if lq_info.num_frames != gt_info.num_frames:
                    raise ValueError(
                        f"mismatched frame counts: {lq} has {lq_info.num_frames} LR frames, "
                        f"{gt} has {gt_info.num_frames} GT"
                    )
                if self.check_sizes and (gt_info.height, gt_info.width) != (
                    lq_info.height * self.scale,
                    lq_info.width * self.scale,
                ):
                    raise ValueError(
                        f"mismatched sizes: GT {gt} is {gt_info.height}x{gt_info.width} but LR {lq} is "
                        f"{lq_info.height}x{lq_info.width} (expected x{self.scale})"
                    )
            ranges = split_frame_ranges(
                num_frames,
                self.clip_length,
                self.test_mode,
                self.val_ranges,
                self.num_val_frames,
                min_length=1 if self.test_mode else (self.num_input_frames or 1),
                where=str(gt),
            )
            for start, end in ranges:
                items.append(
                    dict(
                        key=f"{gt.stem}/{start:08d}",
                        gt_video=str(gt),
                        lq_video=str(lq) if lq is not None else None,
                        lq_path=None,
                        gt_path=None,
                        frame_offset=start,
                        sequence_length=end - start,
                        num_input_frames=self.num_input_frames,
                    )
                )
        return items
