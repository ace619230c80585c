"""``BackendSettings``: the knobs of the CPU kernels backend, passed explicitly (one frozen object).

Three of them change the output bits of a restore (``conv_impl``, ``winograd_tile``, ``dcn_impl``),
so archives record them (``backend_record``) and restores apply the recorded ones. Environment
variables are only documented overrides of the defaults, read through ``utils/env.py``
(:meth:`BackendSettings.from_env`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from basicvsr_archival.utils import env

CONV_IMPLS = ("auto", "native", "nnpack", "winograd")  # ops/fast_conv.py
WINOGRAD_TILES = (4, 6)  # ops/winograd.py: F(4x4, 3x3) and F(6x6, 3x3)
DCN_IMPLS = ("auto", "pure", "cpu_fused", "mmcv", "torchvision")  # ops/modulated_deform_conv.py


@dataclass(frozen=True)
class BackendSettings:
    """Settings of the ``cpu_kernels`` backend (``models/backends/cpu_kernels.py``).

    Args:
        conv_impl: convolutions: 'auto' (Winograd / NNPACK / GEMM where measured faster), 'native'
            (``F.conv2d``), 'nnpack' or 'winograd' only.
        winograd_tile: output tile m of the Winograd F(m x m, 3x3) kernel, 4 or 6.
        dcn_impl: deformable convolution: 'auto' (the fused flow-guided C kernel where it applies,
            else 'cpu_fused'), or one of the ops' implementations ('pure', 'cpu_fused', ...).
        dcn_chunk_mb: column budget (MB) of the pure deformable convolution.
        malloc_tune: raise glibc's mmap/trim thresholds for the large activations (``utils/memory.py``).
    """

    conv_impl: str = "auto"
    winograd_tile: int = 6
    dcn_impl: str = "auto"
    dcn_chunk_mb: float = 512.0
    malloc_tune: bool = True

    def __post_init__(self) -> None:
        """Check every field; one clear line naming the bad one."""
        if self.conv_impl not in CONV_IMPLS:
            raise ValueError(f"conv_impl={self.conv_impl!r}: use one of {', '.join(CONV_IMPLS)}")
        if self.winograd_tile not in WINOGRAD_TILES:
            raise ValueError(f"winograd_tile={self.winograd_tile!r}: use 4 or 6")
        if self.dcn_impl not in DCN_IMPLS:
            raise ValueError(f"dcn_impl={self.dcn_impl!r}: use one of {', '.join(DCN_IMPLS)}")
        if not self.dcn_chunk_mb > 0:
            raise ValueError(f"dcn_chunk_mb={self.dcn_chunk_mb!r}: must be > 0")

    @classmethod
    def from_env(cls) -> BackendSettings:
        """The defaults, overridden by the documented ``BASICVSR_*`` variables (``utils/env.py``)."""
        try:
            return cls(
                conv_impl=(env.read("BASICVSR_CONV_IMPL") or "auto").lower(),
                winograd_tile=int(env.read("BASICVSR_WINOGRAD_TILE", "6")),
                dcn_impl=env.read("BASICVSR_DCN_IMPL", "auto"),
                dcn_chunk_mb=float(env.read("BASICVSR_DCN_CHUNK_MB", "512")),
                malloc_tune=env.read_flag("BASICVSR_MALLOC_TUNE", True),
            )
        except ValueError as exc:
            raise ValueError(f"BASICVSR_* environment override: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (for manifests)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendSettings:
        """Settings from :meth:`to_dict` output; unknown keys are ignored, missing ones take defaults."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names and v is not None}
        if "winograd_tile" in kwargs:
            kwargs["winograd_tile"] = int(kwargs["winograd_tile"])
        if "dcn_chunk_mb" in kwargs:
            kwargs["dcn_chunk_mb"] = float(kwargs["dcn_chunk_mb"])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> BackendSettings:
        """A copy with ``changes`` (None values ignored)."""
        data = self.to_dict()
        data.update({k: v for k, v in changes.items() if v is not None})
        return BackendSettings.from_dict(data)


def add_backend_arguments(parser: Any, backend_default: str | None, default_note: str) -> None:
    """Add ``--backend``, ``--conv-impl``, ``--winograd-tile``, ``--dcn-impl`` to an argparse parser."""
    parser.add_argument(
        "--backend",
        choices=("auto", "cpu_kernels", "torch"),
        default=backend_default,
        help=f"inference backend: fused CPU kernels, plain torch, or auto (default: {default_note})",
    )
    parser.add_argument("--conv-impl", choices=CONV_IMPLS, help="cpu_kernels: convolution implementation")
    parser.add_argument(
        "--winograd-tile", type=int, choices=WINOGRAD_TILES, help="cpu_kernels: Winograd tile"
    )
    parser.add_argument("--dcn-impl", choices=DCN_IMPLS, help="cpu_kernels: deformable-conv implementation")


def overrides_from_arguments(args: Any) -> dict[str, Any]:
    """The settings given by :func:`add_backend_arguments`' flags (unset ones left out)."""
    names = ("conv_impl", "winograd_tile", "dcn_impl")
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
