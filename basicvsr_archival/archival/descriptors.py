"""Content descriptors of one video, for clustering a collection (issue 14).

Computed on the decoded LR stream (what the shared model will see), from at most ``max_frames``
frames sampled as consecutive pairs spread over the video:

* ``si`` / ``ti``: spatial and temporal perceptual information of ITU-T Rec. P.910 ("Subjective
  video quality assessment methods for multimedia applications"). SI = max over frames of the
  standard deviation over space of the Sobel-filtered luma; TI = max over frames of the standard
  deviation over space of the luma difference of successive frames. Luma is BT.601 Y' in 0..255;
  the Sobel response is taken on interior pixels only (no padding), so frame borders add no edges;
* ``colour``: mean and standard deviation of Y', Cb, Cr (BT.601 full range, 0..255), in that order;
* ``embedding``: the base model's feature extractor (``feat_extract`` of BasicVSR++) on each frame,
  per channel the spatial mean and standard deviation, averaged over frames (``2 * mid_channels``);
* ``vector``: the concatenation ``[si, ti, *colour, *embedding]``; ``groups`` names its parts and
  their lengths, so the clustering can weight each part equally (:mod:`.cluster`).

Every number is rounded to 6 significant digits: descriptors go into the catalog, and equal inputs
must give equal catalogs whatever the machine's thread count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from basicvsr_archival.archival.codec import decode_frames
from basicvsr_archival.archival.package import ArchiveError
from basicvsr_archival.utils.ffmpeg import MediaError, PathLike, probe_video

DEFAULT_MAX_FRAMES = 32
GROUPS = ("si", "ti", "colour", "embedding")
_DIGITS = 6
# BT.601 full-range RGB -> Y'CbCr (rows: Y', Cb, Cr); offsets 0, 128, 128
_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float64
)
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


class DescriptorError(ArchiveError):
    """A video whose descriptors cannot be computed (unreadable, no frames, a model without features)."""


def rgb_to_ycbcr(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` -> float64 BT.601 full-range Y'CbCr ``(H, W, 3)`` in 0..255."""
    ycc = frame.astype(np.float64) @ _YCBCR.T
    ycc[..., 1:] += 128.0
    return ycc


def sobel_magnitude(luma: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude ``sqrt(Gx^2 + Gy^2)`` of a 2-D array on its interior ``(H-2, W-2)``."""
    if luma.ndim != 2 or min(luma.shape) < 3:
        raise ValueError(f"Sobel needs a 2-D frame of at least 3x3, got shape {luma.shape}")
    h, w = luma.shape
    gx = np.zeros((h - 2, w - 2))
    gy = np.zeros((h - 2, w - 2))
    for dy in range(3):
        for dx in range(3):
            window = luma[dy : dy + h - 2, dx : dx + w - 2]
            gx += _SOBEL_X[dy, dx] * window
            gy += _SOBEL_X[dx, dy] * window  # the vertical kernel is the transpose
    return np.hypot(gx, gy)


def spatial_information(lumas: Iterable[np.ndarray]) -> float:
    """ITU-T P.910 SI: max over frames of std over space of the Sobel-filtered luma."""
    values = [float(sobel_magnitude(y).std()) for y in lumas]
    if not values:
        raise ValueError("SI needs at least one frame")
    return max(values)


def temporal_information(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """ITU-T P.910 TI: max over successive-frame pairs ``(F[n-1], F[n])`` of std over space of F[n] - F[n-1].

    A video of one frame (no pair) has TI 0.
    """
    return max((float((cur - prev).std()) for prev, cur in pairs), default=0.0)


def colour_statistics(ycbcr_frames: Sequence[np.ndarray]) -> list[float]:
    """Mean and std over all pixels of all frames of Y', Cb, Cr: ``[mY, sY, mCb, sCb, mCr, sCr]``."""
    pixels = np.concatenate([f.reshape(-1, 3) for f in ycbcr_frames], axis=0)
    mean, std = pixels.mean(axis=0), pixels.std(axis=0)
    return [float(v) for pair in zip(mean, std, strict=True) for v in pair]


def feature_extractor(model: nn.Module) -> nn.Module:
    """The ``feat_extract`` module of a BasicVSR++ generator or of a restorer wrapping one."""
    for candidate in (model, getattr(model, "generator", None)):
        extract = getattr(candidate, "feat_extract", None)
        if isinstance(extract, nn.Module):
            return extract
    raise DescriptorError(f"{type(model).__name__}: model has no feat_extract (expected a BasicVSR++)")


@torch.no_grad()
def feature_embedding(frames: Sequence[np.ndarray], model: nn.Module, batch: int = 8) -> list[float]:
    """Per-channel spatial mean and std of ``feat_extract`` on RGB uint8 frames, averaged over frames."""
    extract = feature_extractor(model)
    param = next(extract.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    pooled = []
    for i in range(0, len(frames), batch):
        chunk = np.stack(frames[i : i + batch]).transpose(0, 3, 1, 2)  # (b, 3, h, w)
        x = torch.from_numpy(np.ascontiguousarray(chunk)).to(device=device, dtype=dtype) / 255.0
        feats = extract(x).float()  # (b, c, h', w')
        pooled.append(torch.cat([feats.mean(dim=(2, 3)), feats.std(dim=(2, 3), unbiased=False)], dim=1))
    means = torch.cat(pooled).mean(dim=0).cpu().double().numpy()  # (2c,): c means then c stds
    return [float(v) for v in means]


def sample_indices(num_frames: int, max_frames: int) -> list[int]:
    """Indices of the frames to read: all when they fit, else ``max_frames // 2`` evenly spread pairs."""
    if max_frames < 2:
        raise ValueError(f"max_frames must be >= 2, got {max_frames}")
    if num_frames <= max_frames:
        return list(range(num_frames))
    starts = np.round(np.linspace(0, num_frames - 2, max_frames // 2)).astype(int)
    return sorted({int(i) for s in starts for i in (s, s + 1)})


def read_sampled_frames(lr_video: PathLike, max_frames: int) -> list[tuple[int, np.ndarray]]:
    """``(index, RGB uint8 frame)`` of the sampled frames of a video, decoded in one streaming pass."""
    path = Path(lr_video)
    try:
        wanted = set(sample_indices(probe_video(path).num_frames, max_frames))
        frames = []
        for i, frame in enumerate(decode_frames(path)):
            if i in wanted:
                frames.append((i, frame))
            if i >= max(wanted, default=-1):
                break
    except MediaError as exc:
        raise DescriptorError(f"{path}: cannot read frames for descriptors ({exc})") from None
    if not frames:
        raise DescriptorError(f"{path}: no frames decoded, no descriptors")
    return frames


def _round(values: Iterable[float]) -> list[float]:
    """Values rounded to ``_DIGITS`` significant digits (stable across thread counts)."""
    return [float(f"{v:.{_DIGITS}g}") for v in values]


def descriptor_vector(descriptor: Mapping[str, Any]) -> tuple[list[float], list[tuple[str, int]]]:
    """``([si, ti, *colour, *embedding], [(group, length), ...])`` of a descriptor dict."""
    parts = [
        ("si", [descriptor["si"]]),
        ("ti", [descriptor["ti"]]),
        ("colour", list(descriptor["colour"])),
        ("embedding", list(descriptor.get("embedding") or [])),
    ]
    vector = [float(v) for _, part in parts for v in part]
    return vector, [(name, len(part)) for name, part in parts if part]


def compute_descriptors(
    lr_video: PathLike, model: nn.Module | None = None, max_frames: int = DEFAULT_MAX_FRAMES
) -> dict[str, Any]:
    """SI/TI (P.910), colour statistics and the ``feat_extract`` embedding of a decoded LR video.

    Returns ``{"si", "ti", "colour", "embedding", "vector", "groups", "frames"}`` (plain JSON types;
    ``embedding`` is empty without a model; ``frames`` lists the frame indices used).
    """
    sampled = read_sampled_frames(lr_video, max_frames)
    indices = [i for i, _ in sampled]
    rgb = [f for _, f in sampled]
    ycc = [rgb_to_ycbcr(f) for f in rgb]
    lumas = [f[..., 0] for f in ycc]
    pairs = [(lumas[k - 1], lumas[k]) for k in range(1, len(indices)) if indices[k] == indices[k - 1] + 1]
    desc: dict[str, Any] = {
        "si": _round([spatial_information(lumas)])[0],
        "ti": _round([temporal_information(pairs)])[0],
        "colour": _round(colour_statistics(ycc)),
        "embedding": _round(feature_embedding(rgb, model)) if model is not None else [],
    }
    vector, groups = descriptor_vector(desc)
    desc["vector"] = vector
    desc["groups"] = [[name, n] for name, n in groups]
    desc["frames"] = indices
    return desc
