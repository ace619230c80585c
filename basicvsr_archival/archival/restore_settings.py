"""The settings of a restore (``restore`` config section), its error and its result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

from basicvsr_archival.apis.streaming import OverlapError, resolve_overlap

from .package import ArchiveError

PRECISIONS = ("fp32", "fp16", "bf16")


class RestoreError(ArchiveError):
    """The archive cannot be restored as asked (bad settings, output path, frame count mismatch)."""


@dataclass(frozen=True)
class RestoreSettings:
    """How an archive is restored: device (None = CUDA if available), precision, chunks, output codec.

    Chunks: ``max_seq_len`` frames per model call (None = the whole video at once), ``overlap``
    frames of context on each side of a chunk (None = ``min(3, max_seq_len // 4)``, resolved to a
    number when the settings are built, so a manifest records the value used). Output: ``lossless``
    (libx264rgb CRF 0, or FFV1 with ``codec='ffv1'`` in .mkv) or ``codec`` / ``crf`` / ``preset`` /
    ``pix_fmt`` of a lossy encode.
    """

    device: str | None = None
    precision: str = "fp32"
    max_seq_len: int | None = 30
    overlap: int | None = None
    lossless: bool = True
    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    pix_fmt: str = "yuv420p"

    def __post_init__(self) -> None:
        """Validate the fields."""
        if self.precision not in PRECISIONS:
            raise RestoreError(f"restore.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.max_seq_len is not None and (not isinstance(self.max_seq_len, int) or self.max_seq_len < 1):
            raise RestoreError(f"restore.max_seq_len must be None or an int >= 1, got {self.max_seq_len!r}")
        try:
            overlap = resolve_overlap(self.max_seq_len, self.overlap)
        except OverlapError as exc:
            raise RestoreError(f"restore.{exc}") from None
        object.__setattr__(self, "overlap", overlap)  # frozen: store the resolved value
        if self.device is not None and not str(self.device).startswith(("cpu", "cuda")):
            raise RestoreError(f"restore.device must be None, 'cpu' or 'cuda[:N]', got {self.device!r}")

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> RestoreSettings:
        """Build from a config mapping (``output`` sub-dict flattened); unknown keys are an error."""
        flat = {k: v for k, v in cfg.items() if k != "output"}
        flat.update(dict(cfg.get("output") or {}))
        unknown = sorted(set(flat) - {f.name for f in fields(cls)})
        if unknown:
            raise RestoreError(f"unknown restore setting(s) {unknown}")
        return cls(**flat)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict in the config layout (``output`` sub-dict)."""
        d = asdict(self)
        out = {k: d.pop(k) for k in ("lossless", "codec", "crf", "preset", "pix_fmt")}
        return {**d, "output": out}


@dataclass
class RestoreResult:
    """What :func:`restore_archive` wrote, and how long it took."""

    output: Path
    num_frames: int
    width: int
    height: int
    fps: Fraction
    seconds: float
    device: str
    precision: str
    model: str  # 'archive' or 'base'
    max_seq_len: int | None = None
    overlap: int = 0
    notes: list[str] = field(default_factory=list)  # what a PNG folder could not keep, AAC fallbacks
