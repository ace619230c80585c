"""REDS clip folders (``{data_root}/{lq_folder}/000/00000000.png``, GT likewise) with the REDS4 split."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from basicvsr_archival.registry import DATASETS

from .base import BaseClipDataset, clip_info
from .io import list_clip_folders

__all__ = ["REDS4_VAL_CLIPS", "REDSMultipleGTDataset"]

# the four REDS4 test clips used by EDVR, BasicVSR and BasicVSR++
REDS4_VAL_CLIPS = ("000", "011", "015", "020")


@DATASETS.register_module()
class REDSMultipleGTDataset(BaseClipDataset):
    """REDS multi-frame dataset (official ``REDSMultipleGTDataset``), one item per clip.

    Layout: ``{data_root}/{gt_folder}/{clip}/*.png`` and ``{data_root}/{lq_folder}/{clip}/*.png``, the
    270 clips of ``train_sharp`` + ``val_sharp`` with val clips 000-029 renamed 240-269 (see
    ``data/README.md``). ``lq_folder=None`` uses the GT only (add ``Degrade`` to the pipeline).

    Partition (``val_partition``): 'REDS4' tests on clips 000, 011, 015, 020 and trains on the rest;
    'official' tests on 240-269. ``test_mode`` selects the test clips, otherwise the training clips.
    """

    def __init__(
        self,
        gt_folder: str,
        lq_folder: str | None = None,
        num_input_frames: int | None = None,
        val_partition: str = "REDS4",
        pipeline: Sequence[dict | Callable] | None = None,
        data_root: str = "",
        test_mode: bool = False,
        scale: int = 4,
        check_sizes: bool = True,
        **kwargs,
    ) -> None:
        if val_partition not in ("REDS4", "official"):
            raise ValueError(f"val_partition must be 'REDS4' or 'official', got {val_partition!r}")
        self.gt_folder, self.lq_folder, self.val_partition = gt_folder, lq_folder, val_partition
        super().__init__(pipeline, data_root, test_mode, num_input_frames, scale, check_sizes, **kwargs)

    def val_clips(self) -> list[str]:
        """Names of the test clips of the chosen partition."""
        if self.val_partition == "REDS4":
            return list(REDS4_VAL_CLIPS)
        return [f"{i:03d}" for i in range(240, 270)]

    def load_data_list(self) -> list[dict]:
        """One item per clip of the selected partition; missing clips or folders raise."""
        gt_root, lq_root = self.resolve(self.gt_folder), self.resolve(self.lq_folder)
        clips = list_clip_folders(gt_root, "REDS GT")
        val = set(self.val_clips())
        if self.test_mode:
            missing = sorted(val - set(clips))
            if missing:
                raise FileNotFoundError(f"{gt_root}: missing {self.val_partition} test clips {missing}")
            keys = [c for c in clips if c in val]
        else:
            keys = [c for c in clips if c not in val]
            if not keys:
                raise FileNotFoundError(
                    f"{gt_root}: no training clips outside the {self.val_partition} test set"
                )
        if lq_root is not None:
            lq_clips = set(list_clip_folders(lq_root, "REDS LR"))
            missing = [k for k in keys if k not in lq_clips]
            if missing:
                raise FileNotFoundError(f"{lq_root}: missing LR clips {missing} present in {gt_root}")
        return [
            clip_info(
                key,
                lq_root / key if lq_root is not None else None,
                gt_root / key,
                self.scale,
                self.num_input_frames,
                self.check_sizes,
            )
            for key in keys
        ]
