"""The settings of SR-aware encoding (``codec.sr_aware`` in an archival config), validated.

See :mod:`.sr_aware` for the method. ``codec.sr_aware = dict(enabled=False, mode="segments", gop=48,
crfs=(18, 23, 28, 33, 38), budget=None, target_psnr=None, refine_iters=0)``: how the stream is written
(``"segments"``: closed-GOP segments concatenated by stream copy, each measured exactly; ``"zones"``:
one x264 encode with a CRF zone per segment and the config's GOP, :mod:`.sr_aware_zones`), the segment
length in frames, the CRF ladder (the config's own CRF is always added), one goal (a byte budget for the
LR video payload, None: the uniform encode's at the config's CRF; or a target mean post-SR PSNR), and
the iterations of an optional short fine-tune on the final stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from .codec import CRF_RANGE, CodecError, CodecSettings

SR_AWARE_CODECS = ("libx264",)  # stitchable headers and closed GOPs checked for x264 only
SR_AWARE_MODES = ("zones", "segments")  # one encode with x264 zones | closed-GOP segments, stream copy
PSNR_CAP = 100.0  # dB for a frame restored exactly (keeps the ladder's sums finite)


class SrAwareError(CodecError):
    """Invalid ``codec.sr_aware`` settings, or a ladder / final stream that breaks the guarantees."""


@dataclass(frozen=True)
class SrAwareSettings:
    """``codec.sr_aware``: segment length ``gop`` (frames), CRF ladder ``crfs``, and one goal.

    The goal is a byte ``budget`` for the LR video payload (None: the uniform encode's at the
    config's CRF) or a ``target_psnr`` (mean post-SR PSNR in dB; then the budget is not used).
    ``refine_iters`` > 0: the archive job fine-tunes the model that many more iterations on the
    SR-aware stream (it was trained on the uniform one).
    """

    enabled: bool = False
    mode: str = "segments"
    gop: int = 48
    crfs: tuple[int, ...] = (18, 23, 28, 33, 38)
    budget: int | None = None
    target_psnr: float | None = None
    refine_iters: int = 0

    def __post_init__(self) -> None:
        """Validate every field (one-line error naming the key)."""
        if not isinstance(self.enabled, bool):
            raise SrAwareError(f"codec.sr_aware.enabled must be True or False, got {self.enabled!r}")
        if self.mode not in SR_AWARE_MODES:
            raise SrAwareError(f"codec.sr_aware.mode must be one of {SR_AWARE_MODES}, got {self.mode!r}")
        if isinstance(self.gop, bool) or not isinstance(self.gop, int) or self.gop < 1:
            raise SrAwareError(f"codec.sr_aware.gop must be an int >= 1 (frames), got {self.gop!r}")
        crfs = tuple(self.crfs) if isinstance(self.crfs, list | tuple) else None
        if (
            not crfs
            or len(set(crfs)) != len(crfs)
            or len(crfs) < 2
            or any(isinstance(c, bool) or not isinstance(c, int) for c in crfs)
        ):
            raise SrAwareError(f"codec.sr_aware.crfs must be >= 2 distinct int CRFs, got {self.crfs!r}")
        object.__setattr__(self, "crfs", tuple(sorted(crfs)))
        if self.budget is not None and (
            isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1
        ):
            raise SrAwareError(
                f"codec.sr_aware.budget must be an int >= 1 (bytes) or None, got {self.budget!r}"
            )
        target = self.target_psnr
        if target is not None and (
            isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target < PSNR_CAP
        ):
            raise SrAwareError(
                f"codec.sr_aware.target_psnr must be a number in (0, {PSNR_CAP}) dB, got {target!r}"
            )
        if self.budget is not None and target is not None:
            raise SrAwareError("codec.sr_aware: give budget or target_psnr, not both")
        if (
            isinstance(self.refine_iters, bool)
            or not isinstance(self.refine_iters, int)
            or self.refine_iters < 0
        ):
            raise SrAwareError(f"codec.sr_aware.refine_iters must be an int >= 0, got {self.refine_iters!r}")

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any] | None) -> SrAwareSettings:
        """Build from ``codec.sr_aware`` (None: disabled); unknown keys are an error naming them."""
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise SrAwareError(f"unknown codec.sr_aware setting(s) {unknown}; known: {sorted(known)}")
        return cls(**cfg)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly) that :meth:`from_dict` turns back into equal settings."""
        return asdict(self) | {"crfs": list(self.crfs)}

    def ladder(self, codec: CodecSettings) -> tuple[int, ...]:
        """The CRFs encoded: ``crfs`` and the config's own CRF (so uniform CRF is one of the choices)."""
        return tuple(sorted({*self.crfs, *([codec.crf] if codec.crf is not None else [])}))

    def check_codec(self, codec: CodecSettings) -> None:
        """Raise :class:`SrAwareError` unless ``codec`` can be SR-aware encoded with this ladder."""
        if codec.codec not in SR_AWARE_CODECS:
            raise SrAwareError(f"codec.sr_aware supports codec {SR_AWARE_CODECS}, got {codec.codec!r}")
        lo, hi = CRF_RANGE[codec.codec]
        if not lo <= self.crfs[0] <= self.crfs[-1] <= hi:
            raise SrAwareError(
                f"codec.sr_aware.crfs must lie in [{lo}, {hi}] for {codec.codec}, got {self.crfs}"
            )
