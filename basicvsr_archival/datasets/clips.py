"""One long video's LR/GT frame folders cut into clips, with held-out frames for validation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from basicvsr_archival.registry import DATASETS

from .base import BaseClipDataset, clip_info, split_frame_ranges

__all__ = ["VideoClipsDataset"]


@DATASETS.register_module()
class VideoClipsDataset(BaseClipDataset):
    """Per-video fine-tuning data: flat frame folders of one video cut into ``clip_length`` clips.

    * ``gt_folder`` (and ``lq_folder``, or ``None`` for on-the-fly ``Degrade``) hold the video's
      frames directly (``00000000.png`` ...);
    * held-out frames: ``val_ranges`` (``[[start, end), ...]``) or the last ``num_val_frames``; training
      items (``test_mode=False``) never contain them, ``test_mode=True`` yields exactly them
      (see :func:`~.base.split_frame_ranges`);
    * item keys are ``{name}/{start:08d}`` with ``name`` defaulting to the GT folder's name.
    """

    def __init__(
        self,
        gt_folder: str,
        lq_folder: str | None = None,
        clip_length: int = 30,
        num_input_frames: int | None = None,
        val_ranges: Sequence[Sequence[int]] | None = None,
        num_val_frames: int = 0,
        name: str | None = None,
        pipeline: Sequence[dict | Callable] | None = None,
        data_root: str = "",
        test_mode: bool = False,
        scale: int = 4,
        check_sizes: bool = True,
        **kwargs,
    ) -> None:
        self.gt_folder, self.lq_folder = gt_folder, lq_folder
        self.clip_length, self.val_ranges, self.num_val_frames = (
            int(clip_length),
            val_ranges,
            int(num_val_frames),
        )
        self.name = name
        super().__init__(pipeline, data_root, test_mode, num_input_frames, scale, check_sizes, **kwargs)

    def load_data_list(self) -> list[dict]:
        """One item per clip of the training or held-out frames."""
        gt_root, lq_root = self.resolve(self.gt_folder), self.resolve(self.lq_folder)
        whole = clip_info("all", lq_root, gt_root, self.scale, None, self.check_sizes)
        name = self.name or (gt_root.name if gt_root is not None else "video")
        ranges = split_frame_ranges(
            whole["sequence_length"],
            self.clip_length,
            self.test_mode,
            self.val_ranges,
            self.num_val_frames,
            min_length=1 if self.test_mode else (self.num_input_frames or 1),
            where=str(gt_root),
        )
        items = []
        for start, end in ranges:
            items.append(
                dict(
                    key=f"{name}/{start:08d}",
                    lq_path=whole["lq_path"][start:end] if whole["lq_path"] is not None else None,
                    gt_path=whole["gt_path"][start:end] if whole["gt_path"] is not None else None,
                    sequence_length=end - start,
                    num_input_frames=self.num_input_frames,
                    frame_offset=start,
                )
            )
        return items
