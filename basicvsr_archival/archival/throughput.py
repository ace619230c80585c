"""Restore throughput profile: frames/s of each model size per device, precision and LR size (issue 15).

The cost model prices a retrieval from a measured profile instead of the wall time of a toy clip.
A profile is a JSON file (``benchmarks/bench_throughput.py`` writes it)::

    {"version": 1, "machine": {...}, "entries": [
        {"model": "c8n1", "mid_channels": 8, "num_blocks": 1, "scale": 2, "device": "cpu",
         "device_name": "...", "precision": "fp32", "lr_width": 96, "lr_height": 54, "frames": 8,
         "seconds": 0.61, "fps": 13.1, "pixels_per_s": 67900.0}, ...]}

Pricing a retrieval of ``F`` frames of ``w x h`` LR pixels (``p = w * h``)::

    r(p)    = exp(interp(log p, log p_i, log r_i))    (LR pixels/s; r_i measured at LR sizes p_i, piecewise
                                                      linear in log-log, constant beyond the measured range)
    seconds = F * p / r(p)

so a video of any length and resolution is priced from a few measured sizes; the per-pixel rate
is what changes with the size (fixed costs dominate small frames, caches large ones).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from basicvsr_archival.utils.atomic import atomic_write_text
from basicvsr_archival.utils.ffmpeg import PathLike

from .package import ArchiveError

PROFILE_VERSION = 1
MODEL_SIZES: dict[str, tuple[int, int]] = {
    "c8n1": (8, 1),
    "c16n2": (16, 2),
    "c32n4": (32, 4),
    "c64n7": (64, 7),
}


class ThroughputError(ArchiveError):
    """A profile that cannot be read, or that has no entry for what is priced."""


@dataclass(frozen=True)
class ThroughputEntry:
    """One measurement: ``frames`` LR frames of ``lr_width x lr_height`` restored in ``seconds``."""

    model: str
    mid_channels: int
    num_blocks: int
    scale: int
    device: str
    device_name: str
    precision: str
    lr_width: int
    lr_height: int
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        """Frames per second."""
        return self.frames / self.seconds

    @property
    def pixels_per_s(self) -> float:
        """LR pixels per second."""
        return self.frames * self.lr_width * self.lr_height / self.seconds

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, with ``fps`` and ``pixels_per_s``."""
        return {**asdict(self), "fps": self.fps, "pixels_per_s": self.pixels_per_s}


@dataclass(frozen=True)
class ThroughputProfile:
    """Measured entries of one machine; :meth:`restore_seconds` prices a retrieval from them."""

    entries: tuple[ThroughputEntry, ...]
    machine: Mapping[str, Any]

    def matching(
        self, model: str, device: str, precision: str, scale: int | None = None
    ) -> list[ThroughputEntry]:
        """Entries of one model size, device (``cpu``/``cuda``), precision and (optionally) scale."""
        return [e for e in self.entries if (e.model, e.device, e.precision) == (model, device, precision)
                and (scale is None or e.scale == scale)]  # fmt: skip

    def pixel_rate(
        self, model: str, device: str, precision: str, pixels: float, scale: int | None = None
    ) -> float:
        """LR pixels/s at an LR frame of ``pixels`` pixels (log-log interpolation, module docstring)."""
        found = self.matching(model, device, precision, scale)
        if not found:
            have = sorted({(e.model, e.device, e.precision) for e in self.entries})
            raise ThroughputError(
                f"throughput profile: no entry for {model} on {device} in {precision} (has {have})"
            )
        by_size: dict[int, list[float]] = {}
        for e in found:
            by_size.setdefault(e.lr_width * e.lr_height, []).append(e.pixels_per_s)
        sizes = sorted(by_size)
        log_p = np.log(np.asarray(sizes, dtype=np.float64))
        log_r = np.log([float(np.median(by_size[s])) for s in sizes])
        return float(math.exp(np.interp(math.log(pixels), log_p, log_r)))

    def restore_seconds(
        self, model: str, device: str, precision: str, frames: int, width: int, height: int,
        scale: int | None = None,
    ) -> float:  # fmt: skip
        """Seconds to restore ``frames`` LR frames of ``width x height``: ``F * p / r(p)``."""
        if frames < 0 or width < 1 or height < 1:
            raise ThroughputError(f"cannot price {frames} frames of {width}x{height}")
        pixels = width * height
        return frames * pixels / self.pixel_rate(model, device, precision, pixels, scale)

    def generator_restore_seconds(
        self, generator: Mapping[str, Any], device: str, precision: str, frames: int, width: int, height: int,
        scale: int,
    ) -> float:  # fmt: skip
        """:meth:`restore_seconds` of a generator config (:func:`model_size_name`); ``cuda:0`` is ``cuda``."""
        name = model_size_name(generator)
        return self.restore_seconds(name, str(device).split(":")[0], precision, frames, width, height, scale)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the file format)."""
        return {"version": PROFILE_VERSION, "machine": dict(self.machine),
                "entries": [e.to_dict() for e in self.entries]}  # fmt: skip


def model_size_name(generator: Mapping[str, Any]) -> str:
    """The profile's name of a generator config: ``c{mid_channels}n{num_blocks}`` (c64n7 by default)."""
    return f"c{int(generator.get('mid_channels', 64))}n{int(generator.get('num_blocks', 7))}"


def save_profile(profile: ThroughputProfile, path: PathLike) -> Path:
    """Write the profile as JSON (atomic)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(profile.to_dict(), indent=1) + "\n")
    return p


def load_profile(path: PathLike) -> ThroughputProfile:
    """Read a profile file; a missing, unreadable or malformed file raises one line naming it."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ThroughputError(f"{p}: cannot read the throughput profile ({exc})") from None
    if not isinstance(raw, dict) or raw.get("version") != PROFILE_VERSION:
        raise ThroughputError(f"{p}: not a throughput profile of version {PROFILE_VERSION}")
    names = ThroughputEntry.__dataclass_fields__
    try:
        entries = tuple(ThroughputEntry(**{k: e[k] for k in names}) for e in raw["entries"])
    except (KeyError, TypeError) as exc:
        raise ThroughputError(f"{p}: malformed throughput entry ({exc})") from None
    bad = [e for e in entries if not (e.seconds > 0 and e.frames > 0)]
    if bad:
        raise ThroughputError(f"{p}: entry with non-positive seconds or frames: {bad[0]}")
    return ThroughputProfile(entries, raw.get("machine") or {})


def machine_description(device: str) -> dict[str, Any]:
    """CPU model, cores, torch version and (CUDA) the GPU's name."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    d = {
        "cpu": cpu,
        "cores": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name(0)
    return d


def _model(name: str, scale: int, device: str):
    """A randomly initialised BasicVSR++ of size ``name`` on ``device`` through ``init_model``."""
    from mmengine.config import Config

    from basicvsr_archival.apis.inference import init_model

    mid, blocks = MODEL_SIZES[name]
    cfg = Config.fromfile(str(Path(__file__).resolve().parents[2] / "configs" / "tiny_basicvsrpp_c8n1.py"))
    cfg.merge_from_dict({"model.generator.mid_channels": mid, "model.generator.num_blocks": blocks,
                         "model.generator.upscale_factor": scale})  # fmt: skip
    return init_model(cfg, None, device=device)


def measure(
    models: Sequence[str], device: str, precisions: Iterable[str], lr_sizes: Sequence[tuple[int, int]],
    frames: int = 8, scale: int = 2, repeats: int = 2, max_seq_len: int | None = None,
) -> list[ThroughputEntry]:  # fmt: skip
    """Time each model size on ``device`` per precision and LR size (best of ``repeats`` after a warm-up)."""
    import torch

    from basicvsr_archival.apis.inference import restore_video_frames

    rng = np.random.default_rng(0)
    out = []
    name = machine_description(device).get("gpu", machine_description("cpu")["cpu"])
    for m in models:
        if m not in MODEL_SIZES:
            raise ThroughputError(f"unknown model size {m!r}; one of {sorted(MODEL_SIZES)}")
        model = _model(m, scale, device)
        for precision in precisions:
            for w, h in lr_sizes:
                clip = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(frames)]
                best = math.inf
                for i in range(repeats + 1):
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    run = clip[: 2 if i == 0 else frames]
                    for _ in restore_video_frames(model, run, max_seq_len, device=device, precision=precision,
                                                  progress=False):  # fmt: skip
                        pass
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    if i > 0:  # the first run is a short warm-up
                        best = min(best, time.perf_counter() - t0)
                mid, blocks = MODEL_SIZES[m]
                out.append(ThroughputEntry(m, mid, blocks, scale, device.split(":")[0], name, precision, w, h,
                                           frames, best))  # fmt: skip
    return out
