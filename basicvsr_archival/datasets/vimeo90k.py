"""Vimeo-90K septuplets listed in an annotation file (``sep_trainlist.txt`` / ``meta_info`` style)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from basicvsr_archival.registry import DATASETS

from .base import BaseClipDataset
from .io import image_size

__all__ = ["Vimeo90KMultipleGTDataset"]


@DATASETS.register_module()
class Vimeo90KMultipleGTDataset(BaseClipDataset):
    """Vimeo-90K multi-frame dataset (official ``SRVimeo90KMultipleGTDataset``), one item per septuplet.

    ``ann_file`` lines start with the septuplet key, e.g. ``00001/0266 (256,448,3)`` or ``00001/0266``;
    frames are ``{lq_folder}/{key}/im1.png`` ... ``im{num_input_frames}.png`` (GT likewise). Every
    listed septuplet must have its first and last frame in both folders; ``check_sizes`` also checks
    that the first GT frame is ``scale`` x the first LR frame.
    """

    def __init__(
        self,
        ann_file: str,
        gt_folder: str,
        lq_folder: str | None = None,
        num_input_frames: int = 7,
        pipeline: Sequence[dict | Callable] | None = None,
        data_root: str = "",
        test_mode: bool = False,
        scale: int = 4,
        check_sizes: bool = True,
        **kwargs,
    ) -> None:
        self.vimeo_ann_file, self.gt_folder, self.lq_folder = ann_file, gt_folder, lq_folder
        super().__init__(pipeline, data_root, test_mode, num_input_frames, scale, check_sizes, **kwargs)

    def _keys(self) -> list[str]:
        ann = self.resolve(self.vimeo_ann_file)
        if ann is None or not ann.is_file():
            raise FileNotFoundError(f"{ann}: Vimeo-90K annotation file not found")
        keys = [line.split()[0] for line in ann.read_text().splitlines() if line.strip()]
        if not keys:
            raise ValueError(f"{ann}: annotation file lists no septuplets")
        return keys

    def load_data_list(self) -> list[dict]:
        """One item per annotated septuplet, with explicit ``im1..imN`` frame paths."""
        gt_root, lq_root = self.resolve(self.gt_folder), self.resolve(self.lq_folder)
        for root, what in ((gt_root, "GT"), (lq_root, "LR")):
            if root is not None and not root.is_dir():
                raise FileNotFoundError(f"{root}: Vimeo-90K {what} folder not found")
        n = int(self.num_input_frames)
        items = []
        for key in self._keys():
            paths = {}
            for side, root in (("gt", gt_root), ("lq", lq_root)):
                if root is None:
                    paths[side] = None
                    continue
                frames = [Path(root) / key / f"im{i}.png" for i in range(1, n + 1)]
                for f in (frames[0], frames[-1]):
                    if not f.is_file():
                        raise FileNotFoundError(
                            f"{f}: frame of septuplet {key!r} listed in the annotation is missing"
                        )
                paths[side] = [str(f) for f in frames]
            if self.check_sizes and paths["lq"] is not None:
                (lh, lw), (gh, gw) = image_size(paths["lq"][0]), image_size(paths["gt"][0])
                if (gh, gw) != (lh * self.scale, lw * self.scale):
                    raise ValueError(
                        f"mismatched sizes: GT {paths['gt'][0]} is {gh}x{gw} but LR {paths['lq'][0]} is "
                        f"{lh}x{lw} (expected x{self.scale})"
                    )
            items.append(
                dict(key=key, lq_path=paths["lq"], gt_path=paths["gt"], sequence_length=n, num_input_frames=n)
            )
        return items
