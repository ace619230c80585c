"""Generic multi-GT frame folders (official ``SRFolderMultipleGTDataset``), e.g. Vid4 or UDM10."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from basicvsr_archival.registry import DATASETS

from .base import BaseClipDataset, clip_info
from .io import IMG_EXTENSIONS, list_clip_folders

__all__ = ["SRFolderMultipleGTDataset"]


def _holds_images(folder: Path) -> bool:
    """True if ``folder`` directly contains image files (a single clip rather than a folder of clips)."""
    return folder.is_dir() and any(
        p.suffix.lower() in IMG_EXTENSIONS and p.is_file() for p in folder.iterdir()
    )


@DATASETS.register_module()
class SRFolderMultipleGTDataset(BaseClipDataset):
    """Clips as frame folders: ``{gt_folder}/{clip}/*.png`` and ``{lq_folder}/{clip}/*.png``.

    * ``gt_folder`` may also hold the frames directly (one clip named after the folder);
    * ``lq_folder=None`` uses the GT only (put ``Degrade`` in the pipeline for on-the-fly LR);
    * ``ann_file`` (optional) lists the clips to use, one per line (first token, e.g. ``calendar 41``);
    * LR/GT frames are paired in natural filename order; counts and first-frame sizes are checked.
    """

    def __init__(
        self,
        gt_folder: str,
        lq_folder: str | None = None,
        num_input_frames: int | None = None,
        ann_file: str | None = None,
        pipeline: Sequence[dict | Callable] | None = None,
        data_root: str = "",
        test_mode: bool = False,
        scale: int = 4,
        check_sizes: bool = True,
        **kwargs,
    ) -> None:
        self.gt_folder, self.lq_folder, self.clip_list_file = gt_folder, lq_folder, ann_file
        super().__init__(pipeline, data_root, test_mode, num_input_frames, scale, check_sizes, **kwargs)

    def load_data_list(self) -> list[dict]:
        """One item per clip folder (or one for a flat frame folder)."""
        gt_root, lq_root = self.resolve(self.gt_folder), self.resolve(self.lq_folder)
        if gt_root is None or not gt_root.is_dir():
            raise FileNotFoundError(f"{gt_root}: GT folder not found")
        if lq_root is not None and not lq_root.is_dir():
            raise FileNotFoundError(f"{lq_root}: LR folder not found")
        if _holds_images(gt_root):
            return [
                clip_info(gt_root.name, lq_root, gt_root, self.scale, self.num_input_frames, self.check_sizes)
            ]
        clips = list_clip_folders(gt_root, "GT")
        if self.clip_list_file:
            ann = self.resolve(self.clip_list_file)
            if ann is None or not ann.is_file():
                raise FileNotFoundError(f"{ann}: clip list file not found")
            wanted = [line.split()[0] for line in ann.read_text().splitlines() if line.strip()]
            missing = [c for c in wanted if c not in clips]
            if missing:
                raise FileNotFoundError(f"{gt_root}: clips {missing} listed in {ann} are missing")
            clips = wanted
        if lq_root is not None:
            lq_clips = set(list_clip_folders(lq_root, "LR"))
            missing = [c for c in clips if c not in lq_clips]
            if missing:
                raise FileNotFoundError(f"{lq_root}: missing LR clips {missing} present in {gt_root}")
        return [
            clip_info(
                c,
                lq_root / c if lq_root is not None else None,
                gt_root / c,
                self.scale,
                self.num_input_frames,
                self.check_sizes,
            )
            for c in clips
        ]
