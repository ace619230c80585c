"""Datasets and pipeline transforms; importing this module registers them in ``DATASETS`` / ``TRANSFORMS``."""

from .base import BaseClipDataset, clip_info, split_frame_ranges
from .clips import VideoClipsDataset
from .folder import SRFolderMultipleGTDataset
from .reds import REDS4_VAL_CLIPS, REDSMultipleGTDataset
from .transforms import (
    Degrade,
    Flip,
    GenerateSegmentIndices,
    LoadImageFromFile,
    MirrorSequence,
    PackInputs,
    PairedRandomCrop,
    RandomTransposeHW,
    pad_indices,
)
from .video_file import LoadVideoFrames, VideoFileDataset, read_video_frames
from .vimeo90k import Vimeo90KMultipleGTDataset

__all__ = [
    "REDS4_VAL_CLIPS",
    "BaseClipDataset",
    "Degrade",
    "Flip",
    "GenerateSegmentIndices",
    "LoadImageFromFile",
    "LoadVideoFrames",
    "MirrorSequence",
    "PackInputs",
    "PairedRandomCrop",
    "REDSMultipleGTDataset",
    "RandomTransposeHW",
    "SRFolderMultipleGTDataset",
    "VideoClipsDataset",
    "VideoFileDataset",
    "Vimeo90KMultipleGTDataset",
    "clip_info",
    "pad_indices",
    "read_video_frames",
    "split_frame_ranges",
]
