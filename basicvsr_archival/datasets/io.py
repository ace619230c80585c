"""Frame-folder and image I/O shared by the datasets, transforms and data-preparation tools.

Images are handled as RGB: read as ``float32`` in [0, 1] (8- or 16-bit files) or ``uint8``;
written atomically (temporary file beside the target, then ``os.replace``).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from basicvsr_archival.utils.atomic import atomic_path, atomic_write_bytes

__all__ = [
    "IMG_EXTENSIONS",
    "check_same_frame_counts",
    "image_size",
    "list_clip_folders",
    "list_frames",
    "natural_key",
    "place_file",
    "read_image",
    "read_image_uint8",
    "write_image",
]

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically ('f2.png' before 'f10.png')."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _require_dir(folder: str | os.PathLike, what: str) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: {what} folder not found")
    return path


def list_frames(folder: str | os.PathLike, what: str = "frame") -> list[Path]:
    """Image files directly inside ``folder`` in natural order; raises if the folder is missing or empty."""
    path = _require_dir(folder, what)
    frames = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS]
    if not frames:
        raise FileNotFoundError(f"{path}: {what} folder holds no images ({', '.join(IMG_EXTENSIONS)})")
    return sorted(frames, key=lambda p: natural_key(p.name))


def list_clip_folders(folder: str | os.PathLike, what: str = "clip") -> list[str]:
    """Names of the sub-folders of ``folder`` (one per clip) in natural order; raises if there are none."""
    path = _require_dir(folder, what)
    clips = [p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not clips:
        raise FileNotFoundError(f"{path}: {what} folder holds no clip sub-folders")
    return sorted(clips, key=natural_key)


def check_same_frame_counts(lq: Sequence, gt: Sequence, lq_where: str, gt_where: str) -> None:
    """Raise ``ValueError`` naming both places when the LR and GT frame counts differ."""
    if len(lq) != len(gt):
        raise ValueError(
            f"mismatched frame counts: {lq_where} has {len(lq)} LR frames, {gt_where} has {len(gt)} GT"
        )


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image, from the PNG header when possible (no decoding)."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(24)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(height), int(width)
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise OSError(f"{p}: not a readable image")
    return int(img.shape[0]), int(img.shape[1])


def _imread(path: str | os.PathLike) -> np.ndarray:
    """Decode ``path`` to an RGB array of its own bit depth (gray expanded, alpha dropped)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: image file not found")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise OSError(f"{p}: not a readable image")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB ``float32`` image in [0, 1] of shape (H, W, 3); 8- and 16-bit files are scaled by 255 / 65535."""
    img = _imread(path)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    return np.clip(img.astype(np.float32), 0.0, 1.0)


def read_image_uint8(path: str | os.PathLike) -> np.ndarray:
    """RGB ``uint8`` image (H, W, 3); 16-bit files are rounded to 8 bits."""
    img = _imread(path)
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return np.round(img.astype(np.float64) / 257.0).astype(np.uint8)
    return np.round(np.clip(img.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_image(path: str | os.PathLike, img: np.ndarray, overwrite: bool = True) -> Path:
    """Write an RGB ``uint8`` (H, W, 3) image atomically (temp file + ``os.replace``); returns the path."""
    out = Path(path)
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{out}: expected an RGB uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(out.suffix or ".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{out}: cv2 could not encode a {out.suffix!r} image")
    return atomic_write_bytes(out, buf.tobytes())


def place_file(src: str | os.PathLike, dst: str | os.PathLike, link: bool = False) -> Path:
    """Copy (or hard-link) ``src`` to ``dst`` atomically (temp name + ``os.replace``); returns ``dst``."""
    src_p, out = Path(src), Path(dst)
    if not src_p.is_file():
        raise FileNotFoundError(f"{src_p}: file to copy not found")
    if out.exists() and os.path.samefile(src_p, out):
        raise ValueError(f"{out}: refusing to replace a file with itself")
    with atomic_path(out) as tmp:
        if link:
            os.unlink(tmp)
            os.link(src_p, tmp)
        else:
            shutil.copyfile(src_p, tmp)
    return out
