"""The model member of an archive: full or delta weights, fp32/fp16/int8, compressed; seeded-init references.

A delta model stores ``tuned - base`` per tensor against a base checkpoint named by SHA-256. A model
trained from scratch stores only the tensors fine-tuning changed; the ones still bit-identical to their
seeded initialisation are listed and hashed per module (``init_reference``), regenerated at restore
and checked (:func:`check_reference`), since torch does not promise the same initialisation across
versions. int8 is symmetric per-tensor quantisation (error at most half a step per value). At restore
the base checkpoint is looked up by name or hash (:func:`find_base_checkpoint`).
"""

from __future__ import annotations

import hashlib
import io
import lzma
import math
import os
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from basicvsr_archival.errors import first_line
from basicvsr_archival.utils import env
from basicvsr_archival.utils.checkpoint import CheckpointReadError
from basicvsr_archival.utils.checkpoint import read_state_dict as read_checkpoint_state_dict

from .package import (
    ArchiveCorruptError,
    ArchiveError,
    ArchiveFormatError,
    BaseCheckpointError,
    PathLike,
    sha256_file,
)

MODEL_FORMAT = "basicvsr-archival-model"
STORAGE_MODES = ("auto", "full", "delta")
STORAGE_DTYPES = ("fp32", "fp16", "int8")
COMPRESSIONS = ("none", "zlib", "lzma")
_MODEL_SUFFIX = {"none": "model.pt", "zlib": "model.pt.zlib", "lzma": "model.pt.xz"}
ENV_CHKPTS = "BASICVSR_ARCHIVAL_CHKPTS"  # extra folders searched for base checkpoints (os.pathsep list)


@dataclass(frozen=True)
class StorageSettings:
    """Model member settings: ``mode`` full/delta (auto: delta iff a base exists), dtype, compression.

    ``reference_init``: a model trained from scratch stores the tensors still at their seeded
    initialisation (frozen or untouched) by reference, as SHA-256 hashes checked at restore.
    """

    mode: str = "auto"
    dtype: str = "fp16"
    compression: str = "lzma"
    level: int = 9
    reference_init: bool = True

    def __post_init__(self) -> None:
        """Validate every field."""
        for name, choices in (
            ("mode", STORAGE_MODES),
            ("dtype", STORAGE_DTYPES),
            ("compression", COMPRESSIONS),
        ):
            if getattr(self, name) not in choices:
                raise ArchiveError(f"storage.{name} must be one of {choices}, got {getattr(self, name)!r}")
        if isinstance(self.level, bool) or not isinstance(self.level, int) or not 0 <= self.level <= 9:
            raise ArchiveError(f"storage.level must be an int in [0, 9], got {self.level!r}")
        if not isinstance(self.reference_init, bool):
            raise ArchiveError(f"storage.reference_init must be True or False, got {self.reference_init!r}")

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> StorageSettings:
        """Build from a config mapping; unknown keys are an error."""
        unknown = sorted(set(cfg) - {f.name for f in fields(cls)})
        if unknown:
            raise ArchiveError(f"unknown storage setting(s) {unknown}")
        return cls(**dict(cfg))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict."""
        return asdict(self)

    def resolved_mode(self, has_base: bool) -> str:
        """'full' or 'delta' for this run (delta needs a base checkpoint)."""
        if self.mode == "auto":
            return "delta" if has_base else "full"
        if self.mode == "delta" and not has_base:
            raise ArchiveError("storage.mode='delta' needs a base_checkpoint (or use mode 'full' / 'auto')")
        return self.mode

    @property
    def member_name(self) -> str:
        """File name of the model member for this compression."""
        return _MODEL_SUFFIX[self.compression]


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint (its 'state_dict' entry, 'module.' prefixes stripped), read safely."""
    try:
        state = read_checkpoint_state_dict(path)
    except CheckpointReadError as exc:  # one line: missing, not a checkpoint, damaged, unsafe objects
        raise BaseCheckpointError(str(exc)) from None
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BaseCheckpointError(f"{path}: checkpoint holds no state dict of tensors")
    return state


def _cast(t: torch.Tensor, dtype: str) -> tuple[torch.Tensor, float | None]:
    """``(stored tensor, int8 scale or None)`` of ``t`` in the storage dtype.

    fp16: float tensors that would overflow fp16 stay fp32. int8: symmetric per-tensor quantisation
    ``q = round(t / s)``, ``s = max|t| / 127`` (error at most ``s / 2`` per value), meant for deltas.
    """
    if not t.is_floating_point():
        return t.contiguous(), None
    if dtype == "fp16":
        half = t.to(torch.float16)
        if torch.isfinite(half).all() or not torch.isfinite(t).all():
            return half, None
    if dtype == "int8":
        peak = float(t.abs().max()) if t.numel() else 0.0
        if math.isfinite(peak) and peak > 0:
            scale = peak / 127.0
            return torch.round(t.float() / scale).clamp_(-127, 127).to(torch.int8), scale
    return t.float().contiguous(), None


def _compress(data: bytes, compression: str, level: int) -> bytes:
    """Compress ``data`` with zlib / lzma (xz container) or return it unchanged."""
    if compression == "zlib":
        return zlib.compress(data, level)
    if compression == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_XZ, preset=level)
    return data


def _decompress(data: bytes, compression: str, where: str) -> bytes:
    """Inverse of :func:`_compress`; corrupt data raises :class:`ArchiveCorruptError`."""
    try:
        if compression == "zlib":
            return zlib.decompress(data)
        if compression == "lzma":
            return lzma.decompress(data, format=lzma.FORMAT_XZ)
    except (zlib.error, lzma.LZMAError) as exc:
        raise ArchiveCorruptError(f"{where}: cannot decompress model ({exc})") from None
    return data


def encode_model(
    state: Mapping[str, torch.Tensor],
    settings: StorageSettings,
    base_state: Mapping[str, torch.Tensor] | None = None,
    base_sha256: str | None = None,
    init_state: Mapping[str, torch.Tensor] | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Serialise a restorer state dict as a full or delta model; returns (member bytes, summary).

    Delta mode: for each key whose base tensor has the same shape, store ``weights - base`` (computed
    in fp32, then cast to the storage dtype); keys whose delta is exactly zero are only listed
    (``unchanged``); keys absent from the base are stored in full. Full mode stores every tensor,
    except, given ``init_state`` (the regenerable initialisation of a run from scratch), those
    bit-identical to it: they are only listed (``init``) and hashed (``summary['init_reference']``,
    see :func:`reference_record`).
    """
    mode = settings.resolved_mode(base_state is not None)
    tensors: dict[str, torch.Tensor] = {}
    scales: dict[str, float] = {}
    kinds: dict[str, list[str]] = {"delta": [], "full": [], "unchanged": [], "init": []}
    for key, value in state.items():
        v = value.detach().cpu()
        if mode == "full" and init_state is not None and _same_tensor(v, init_state.get(key)):
            kinds["init"].append(key)
            continue
        base = base_state.get(key) if (mode == "delta" and base_state is not None) else None
        if base is not None and tuple(base.shape) == tuple(v.shape):
            if v.is_floating_point():
                diff = v.float() - base.float()
                if not torch.any(diff):
                    kinds["unchanged"].append(key)
                    continue
                tensors[key], scale = _cast(diff, settings.dtype)
                if scale is not None:
                    scales[key] = scale
                kinds["delta"].append(key)
                continue
            if torch.equal(v, base.to(v.dtype)):
                kinds["unchanged"].append(key)
                continue
        tensors[key], scale = _cast(v, settings.dtype)
        if scale is not None:
            scales[key] = scale
        kinds["full"].append(key)
    payload = {
        "format": MODEL_FORMAT,
        "version": 1,
        "mode": mode,
        "dtype": settings.dtype,
        "base_sha256": base_sha256 if mode == "delta" else None,
        "tensors": tensors,
        "scales": scales,
        **{f"{k}_keys": v for k, v in kinds.items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    raw = buf.getvalue()
    data = _compress(raw, settings.compression, settings.level)
    summary = {
        "mode": mode,
        "dtype": settings.dtype,
        "compression": settings.compression,
        "num_tensors": len(state),
        "num_params": int(sum(v.numel() for v in state.values())),
        "stored_params": int(sum(t.numel() for t in tensors.values())),
        "delta_tensors": len(kinds["delta"]),
        "full_tensors": len(kinds["full"]),
        "unchanged_tensors": len(kinds["unchanged"]),
        "raw_bytes": len(raw),
        "bytes": len(data),
    }
    if kinds["init"]:
        summary["init_reference"] = reference_record(state, kinds["init"])
    return data, summary


def _same_tensor(a: torch.Tensor, b: torch.Tensor | None) -> bool:
    """Bit-identical: same dtype, shape and bytes."""
    return b is not None and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b.cpu())


def _tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of a tensor (any dtype), in row-major order."""
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def module_groups(keys: Iterable[str], chosen: Iterable[str]) -> dict[str, list[str]]:
    """``chosen`` keys grouped under the shortest dotted prefixes (modules) whose keys are all chosen."""
    keys, picked = list(keys), set(chosen)
    total: dict[str, int] = {}
    inside: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            total[prefix] = total.get(prefix, 0) + 1
            inside[prefix] = inside.get(prefix, 0) + (key in picked)
    groups: dict[str, list[str]] = {}
    for key in keys:
        if key in picked:
            parts = key.split(".")
            prefixes = (".".join(parts[:i]) for i in range(1, len(parts) + 1))
            groups.setdefault(next(p for p in prefixes if inside[p] == total[p]), []).append(key)
    return groups


def reference_record(state: Mapping[str, torch.Tensor], keys: Iterable[str]) -> dict[str, Any]:
    """Tensors stored by reference: count, parameters and a SHA-256 per module (name, dtype, shape, bytes)."""
    groups = module_groups(state, keys)
    hashes = {}
    for prefix, members in groups.items():
        h = hashlib.sha256()
        for key in sorted(members):
            t = state[key]
            h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(_tensor_bytes(t))
        hashes[prefix] = h.hexdigest()
    count = sum(len(m) for m in groups.values())
    params = int(sum(state[k].numel() for m in groups.values() for k in m))
    return {"tensors": count, "params": params, "sha256": hashes}


def check_reference(init_state: Mapping[str, torch.Tensor], record: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ArchiveError` naming the modules whose regenerated tensors differ from the record."""
    want = record.get("sha256") or {}
    keys = [k for k in init_state if any(k == p or k.startswith(p + ".") for p in want)]
    got = reference_record(init_state, keys)["sha256"]
    bad = sorted(p for p in want if got.get(p) != want[p])
    if bad:
        names = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ArchiveError(
            f"{where}: the seeded initialisation regenerated here (torch {torch.__version__}) differs from "
            f"the archive's in {names}; restore with the torch version that made the archive "
            f"({record.get('torch', '?')})"
        )


def decode_model(
    data: bytes,
    compression: str,
    base_state: Mapping[str, torch.Tensor] | None = None,
    where: str = "model",
    init_state: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Rebuild the fp32 restorer state dict from :func:`encode_model` bytes.

    Deltas need ``base_state``; tensors stored by reference need ``init_state`` (checked beforehand
    with :func:`check_reference`).
    """
    raw = _decompress(data, compression, where)
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip / pickle
        raise ArchiveCorruptError(f"{where}: model member is unreadable ({first_line(exc)})") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ArchiveFormatError(f"{where}: not a {MODEL_FORMAT} model")
    scales = payload.get("scales", {})
    tensors = {k: (t.float() * scales[k] if k in scales else t) for k, t in payload["tensors"].items()}
    if payload["mode"] == "delta" and base_state is None:
        raise BaseCheckpointError(f"{where}: delta model needs its base checkpoint")
    out: dict[str, torch.Tensor] = {}
    init_keys = payload.get("init_keys", [])
    if init_keys and init_state is None:
        raise ArchiveError(
            f"{where}: model stores {len(init_keys)} tensors by reference to its initialisation"
        )
    for key in init_keys:
        assert init_state is not None
        if key not in init_state:
            raise ArchiveError(f"{where}: the regenerated initialisation lacks tensor {key!r}")
        out[key] = init_state[key].clone()
    for key in payload["full_keys"]:
        t = tensors[key]
        out[key] = t.float() if t.is_floating_point() else t
    for key in payload["delta_keys"] + payload["unchanged_keys"]:
        assert base_state is not None
        if key not in base_state:
            raise BaseCheckpointError(f"{where}: base checkpoint lacks tensor {key!r}")
        base = base_state[key]
        if key in tensors:
            out[key] = base.float() + tensors[key].float()
        else:
            out[key] = base.float() if base.is_floating_point() else base.clone()
    return out


# ------------------------------------------------------------------------------------------ base checkpoints
def base_search_dirs(extra: Iterable[PathLike] = ()) -> list[Path]:
    """Where base checkpoints are looked for: ``extra``, ``$BASICVSR_ARCHIVAL_CHKPTS``, then ``./chkpts``."""
    dirs = [Path(e) for e in extra]
    dirs += [Path(d) for d in (env.read(ENV_CHKPTS) or "").split(os.pathsep) if d]
    dirs.append(Path("chkpts"))
    return dirs


def find_base_checkpoint(base: Mapping[str, Any], search: Iterable[PathLike] = ()) -> Path:
    """Path of the base checkpoint described by ``base`` (``name``, ``sha256``) in ``search`` + defaults.

    Each entry of ``search`` is a checkpoint file or a folder; in a folder the recorded file name and
    ``<sha256>.pth`` are tried. The file must have the recorded SHA-256; a same-named file with another
    hash raises :class:`BaseCheckpointError` (mismatch) if no matching file is found elsewhere.
    """
    want, name = str(base["sha256"]), str(base.get("name") or "")
    candidates: list[Path] = []
    for entry in base_search_dirs(search):
        if entry.is_file():
            candidates.append(entry)
        elif entry.is_dir():
            candidates += [entry / n for n in (name, f"{want}.pth") if n and (entry / n).is_file()]
    mismatched = []
    for cand in dict.fromkeys(candidates):
        if sha256_file(cand) == want:
            return cand
        mismatched.append(cand)
    if mismatched:
        raise BaseCheckpointError(
            f"{mismatched[0]}: base checkpoint mismatch: SHA-256 differs from the archive's base "
            f"{name or ''} (sha256 {want[:16]}...)"
        )
    looked = ", ".join(str(d) for d in base_search_dirs(search))
    raise BaseCheckpointError(
        f"base checkpoint {name or '?'} (sha256 {want[:16]}...) not found in {looked}; "
        "pass --base-checkpoint PATH"
    )
