"""ONNX export of a whole BasicVSR++ video model: (n, T, 3, h, w) in [0, 1] -> (n, T, 3, s*h, s*w).

The recurrent propagation is a Python loop over the frames, so the exported graph is unrolled for a
fixed number of frames ``T`` (the restore path feeds fixed-size chunks anyway). The height and width
can stay dynamic (``dynamic_hw=True``, the default, with the ``torch.export``-based exporter) for
super-resolution models; the exported graph then takes any h, w in [64, 4096].

What :func:`export_ready_model` changes, on a private copy of the network (the model passed in is
left as it is):

* the copy runs the plain network (backend ``'torch'``, ``models/backends``) and every deformable
  convolution is forced to the pure-PyTorch path (``impl='pure'``, not mmcv's or torchvision's op);
* ``check_if_mirror_extended`` always answers False: it compares frame values (``torch.equal``), which
  an exporter would bake into the graph. For a mirror-extended input the network then computes the
  forward flows instead of reusing the flipped backward ones: the same values up to rounding;
* with dynamic h/w, SPyNet's "resize to a multiple of 32 only if needed" becomes an unconditional
  resize (an exact identity at a multiple of 32), and the deformable convolution runs unchunked;
* the weights are float32, contiguous (NCHW) and on the CPU.

:func:`verify_onnx` runs the file with onnxruntime (CPUExecutionProvider) and returns the largest
absolute difference to the PyTorch model on the same frames.
"""

from __future__ import annotations

import copy
import logging
import re
import time
import types
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from basicvsr_archival.apis.inference import InferenceError, PathLike
from basicvsr_archival.errors import first_line
from basicvsr_archival.models.backends import apply_backend
from basicvsr_archival.models.basicvsr_plusplus import BasicVSRPlusPlus
from basicvsr_archival.models.ops import ModulatedDeformConv2d
from basicvsr_archival.models.spynet import SPyNet
from basicvsr_archival.utils.atomic import atomic_path

EXPORTERS = ("dynamo", "torchscript")
DEFAULT_OPSET = 18
MIN_OPSET = {"dynamo": 18, "torchscript": 17}  # grid_sample needs 16; torch.export's ONNX ops are 18
DEFAULT_NUM_FRAMES = 10
DEFAULT_TOLERANCE = 1e-3  # max |onnxruntime - PyTorch| accepted by export_onnx's verification
DEFAULT_SIZE = (64, 64)  # (h, w) of the example input when the height/width stay dynamic
DYNAMIC_MIN_SIZE = 64  # smaller frames are reflect-padded by shape-dependent Python code
DYNAMIC_MAX_SIZE = 4096
INPUT_NAME = "lqs"
OUTPUT_NAME = "outputs"
_PROTOBUF_LIMIT = 2**31 - 1  # an ONNX file without external data must stay below 2 GiB


class OnnxExportError(InferenceError):
    """A user-facing ONNX export / verification failure, with a one-line message."""


# ---------------------------------------------------------------------------------------- wrapper
def _never_mirror_extended(lqs: torch.Tensor) -> bool:
    """Replacement of ``check_if_mirror_extended``: no value-dependent branch in the exported graph."""
    return False


def _spynet_forward_any_size(self: SPyNet, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
    """SPyNet forward whose resize to a multiple of 32 does not branch on symbolic sizes.

    With static sizes this is the model's own forward. With symbolic sizes (dynamic export) the
    frames are always resized to ``ceil(size / 32) * 32`` and the flow resized back and rescaled,
    which is the model's computation (a bilinear resize to the same size is the identity).
    """
    h, w = ref.shape[2:4]
    if isinstance(h, int) and isinstance(w, int):
        return type(self).forward(self, ref, supp)
    h_up, w_up = (h + 31) // 32 * 32, (w + 31) // 32 * 32
    ref = F.interpolate(ref, size=(h_up, w_up), mode="bilinear", align_corners=False)
    supp = F.interpolate(supp, size=(h_up, w_up), mode="bilinear", align_corners=False)
    flow = self.compute_flow(ref, supp)  # (n, 2, h_up, w_up), channels (dx, dy)
    flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    return torch.cat([flow[:, :1] * (w / w_up), flow[:, 1:] * (h / h_up)], dim=1)  # (n, 2, h, w)


def _generator_of(model: nn.Module) -> BasicVSRPlusPlus:
    """The BasicVSR++ network of ``model`` (a restorer with ``.generator`` or the network itself)."""
    net = getattr(model, "generator", model)
    if not isinstance(net, BasicVSRPlusPlus):
        raise OnnxExportError(f"ONNX export supports BasicVSRPlusPlus generators, got {type(net).__name__}")
    return net


class ExportableVSR(nn.Module):
    """Export-ready copy of a BasicVSR++ network: (n, T, 3, h, w) in [0, 1] -> (n, T, 3, s*h, s*w).

    Args:
        model: a model from :func:`~basicvsr_archival.apis.init_model` (or a ``BasicVSRPlusPlus``);
            it is copied, not changed.

    ``scale`` is the output/input size ratio (4 or 2; 1 in same-size mode). The output is not
    clamped, exactly as the network's.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        net = copy.deepcopy(_generator_of(model)).float().cpu().eval()
        apply_backend(net, "torch")  # the plain network: only PyTorch ops to trace
        net.to(memory_format=torch.contiguous_format)
        for module in net.modules():
            if isinstance(module, ModulatedDeformConv2d):
                module.impl = "pure"  # SecondOrderDeformableAlignment passes it to the DCN function
        net.check_if_mirror_extended = _never_mirror_extended
        if net.spynet is not None:  # flow_estimator='none': zero flows, nothing to patch
            net.spynet.forward = types.MethodType(_spynet_forward_any_size, net.spynet)
        net.requires_grad_(False)
        self.net = net
        self.scale = net.upscale_factor if net.is_low_res_input else 1

    @property
    def dynamic_hw_supported(self) -> bool:
        """Whether the graph can keep h, w dynamic (super-resolution mode; not same-size mode)."""
        return bool(self.net.is_low_res_input)

    def forward(self, lqs: torch.Tensor) -> torch.Tensor:
        """Super-resolve ``lqs`` (n, T, 3, h, w) in [0, 1] to (n, T, 3, s*h, s*w)."""
        return self.net(lqs)


def export_ready_model(model: nn.Module) -> ExportableVSR:
    """Wrap (a copy of) ``model`` for tracing: pure-PyTorch DCN, no value-dependent control flow."""
    return ExportableVSR(model)


# ---------------------------------------------------------------------------------------- export
@dataclass
class OnnxExportResult:
    """What :func:`export_onnx` wrote."""

    path: Path
    num_frames: int
    height: int  # of the example input (the only accepted size unless dynamic_hw)
    width: int
    dynamic_hw: bool
    opset: int
    exporter: str
    size_bytes: int
    seconds: float  # export (and verification) time
    max_abs_diff: float | None = None  # max |onnxruntime - PyTorch| on the verification frames


@contextmanager
def _dcn_chunk_mb(wrapper: nn.Module, chunk_mb: float) -> Iterator[None]:
    """Give the wrapper's deformable convolutions the column budget ``chunk_mb`` for the block."""
    layers = [m for m in wrapper.modules() if isinstance(m, ModulatedDeformConv2d)]
    old = [m.chunk_mb for m in layers]
    for m in layers:
        m.chunk_mb = chunk_mb
    try:
        yield
    finally:
        for m, value in zip(layers, old):
            m.chunk_mb = value


def _check_export_args(
    wrapper: ExportableVSR, num_frames: int, height: int, width: int, dynamic_hw: bool, opset: int,
    exporter: str, batch_size: int,
) -> None:  # fmt: skip
    """Raise OnnxExportError for arguments the export cannot honour."""
    if exporter not in EXPORTERS:
        raise OnnxExportError(f"unknown exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    if opset < MIN_OPSET[exporter]:
        raise OnnxExportError(
            f"opset {opset} is too old for the {exporter} exporter: it needs >= {MIN_OPSET[exporter]}"
        )
    if num_frames < 1 or batch_size < 1 or height < 1 or width < 1:
        raise OnnxExportError(
            f"need >= 1 frame, batch and pixel, got T={num_frames}, batch={batch_size}, {width}x{height}"
        )
    if not dynamic_hw:
        return
    if exporter != "dynamo":
        raise OnnxExportError("dynamic height/width needs the dynamo exporter: use fixed H/W instead")
    if not wrapper.dynamic_hw_supported:
        raise OnnxExportError(
            "dynamic height/width is only supported in super-resolution mode: use fixed H/W"
        )
    if not (DYNAMIC_MIN_SIZE <= height <= DYNAMIC_MAX_SIZE and DYNAMIC_MIN_SIZE <= width <= DYNAMIC_MAX_SIZE):
        raise OnnxExportError(
            f"with dynamic height/width the example size must be in [{DYNAMIC_MIN_SIZE}, "
            f"{DYNAMIC_MAX_SIZE}], got {width}x{height}"
        )


# sizes at which the size conditions of a dynamic export are checked (a grid of h x w)
_PROBE_SIZES = (64, 65, 95, 96, 97, 127, 128, 129, 144, 180, 240, 270, 320, 360, 480, 540, 576, 720,
                1080, 1280, 1920, 2160, 3840, 4095, 4096)  # fmt: skip


def _capture(
    wrapper: ExportableVSR, example: torch.Tensor, dynamic_hw: bool
) -> tuple[torch.export.ExportedProgram, dict[str, str]]:
    """``torch.export`` the wrapper (non-strict); with dynamic h/w, check the graph really stays dynamic.

    Returns the program and the names to give its symbolic sizes in the ONNX file.

    Size-dependent Python code in the network (padding, SPyNet's resizing, DCN chunking) makes the
    tracer record conditions on h and w. They are kept as runtime assertions (which an ONNX graph
    drops) and checked here on a grid of sizes, so a graph that would only be right for some sizes
    is refused instead of written.
    """
    if not dynamic_hw:
        return torch.export.export(wrapper, (example,), strict=False), {}
    dims = {
        3: torch.export.Dim("height", min=DYNAMIC_MIN_SIZE, max=DYNAMIC_MAX_SIZE),
        4: torch.export.Dim("width", min=DYNAMIC_MIN_SIZE, max=DYNAMIC_MAX_SIZE),
    }
    # a DCN column budget that no size in range exceeds: one unchunked DCN, no size-dependent loop
    with _dcn_chunk_mb(wrapper, 1e12):
        program = torch.export.export(
            wrapper, (example,), dynamic_shapes={"lqs": dims}, strict=False,
            prefer_deferred_runtime_asserts_over_guards=True,
        )  # fmt: skip
    return program, _check_size_conditions(program)


def _check_size_conditions(program: torch.export.ExportedProgram) -> dict[str, str]:
    """Raise OnnxExportError if h/w were specialised or a recorded size condition fails on the probe grid.

    Returns ``{symbol: 'height' / 'width'}`` for the input's symbolic sizes.
    """
    name = program.graph_signature.user_inputs[0]
    placeholder = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    h, w = placeholder.meta["val"].shape[3:5]
    if not (isinstance(h, torch.SymInt) and isinstance(w, torch.SymInt)):
        raise OnnxExportError(f"the exporter fixed the frame size to {w}x{h}: use fixed height/width")
    sym_h, sym_w = h.node.expr, w.node.expr
    conditions = set()
    for node in program.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.aten._assert_scalar.default:
            cond = node.args[0].meta.get("val") if isinstance(node.args[0], torch.fx.Node) else node.args[0]
            if isinstance(cond, torch.SymBool):
                conditions.add(cond.node.expr)
    for expr in conditions:
        for ph in _PROBE_SIZES:
            for pw in _PROBE_SIZES:
                value = expr.xreplace({sym_h: ph, sym_w: pw})
                if not (value.is_Boolean and bool(value)):
                    raise OnnxExportError(
                        f"the exported graph is not valid for {pw}x{ph} frames (condition {expr}): "
                        "use fixed height/width"
                    )
    return {str(sym_h): "height", str(sym_w): "width"}


def _export_to_file(
    wrapper: ExportableVSR, example: torch.Tensor, path: Path, dynamic_hw: bool, opset: int, exporter: str,
    optimize: bool,
) -> None:  # fmt: skip
    """Run ``torch.onnx.export`` and write a self-contained ONNX file (no external data) to ``path``."""
    names = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset)
    logger = logging.getLogger("torch.onnx")  # e.g. "torchvision is not installed. Skipping ..."
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        _export_quietly(wrapper, example, path, dynamic_hw, exporter, optimize, names)
    finally:
        logger.setLevel(level)


def _export_quietly(
    wrapper: ExportableVSR, example: torch.Tensor, path: Path, dynamic_hw: bool, exporter: str,
    optimize: bool, names: dict,
) -> None:  # fmt: skip
    """The body of :func:`_export_to_file`, with the exporters' warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation / tracer chatter
        if exporter == "torchscript":
            torch.onnx.export(wrapper, (example,), str(path), dynamo=False, **names)
            return
        program, dim_names = _capture(wrapper, example, dynamic_hw)
        onnx_program = torch.onnx.export(program, (example,), verbose=False, optimize=optimize, **names)
    if onnx_program is None:  # pragma: no cover - the dynamo exporter always returns the program
        raise OnnxExportError("torch.onnx.export returned no program")
    proto = onnx_program.model_proto
    _rename_dims(proto, dim_names)
    for node in proto.graph.node:  # per-node stack traces / module paths: ~40% of the file, debug only
        del node.metadata_props[:]
    if proto.ByteSize() >= _PROTOBUF_LIMIT:
        raise OnnxExportError(f"the model is {proto.ByteSize()} bytes, over the 2 GiB of one ONNX file")
    import onnx

    onnx.save_model(proto, str(path), save_as_external_data=False)  # self-contained: no data file


def _rename_dims(proto, names: dict[str, str]) -> None:
    """Rename symbolic sizes in ``proto`` (e.g. ``s40`` -> ``height``, ``4*s40`` -> ``4*height``)."""
    if not names:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    graph = proto.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: names[m.group(1)], dim.dim_param)


def export_onnx(
    model: nn.Module,
    output_path: PathLike,
    num_frames: int = DEFAULT_NUM_FRAMES,
    height: int | None = None,
    width: int | None = None,
    dynamic_hw: bool = True,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    batch_size: int = 1,
    optimize: bool = False,
    verify_frames: torch.Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> OnnxExportResult:
    """Export ``model`` to a self-contained ONNX file at ``output_path``, atomically (temp file + rename).

    The graph takes ``(batch_size, num_frames, 3, h, w)`` float32 in [0, 1]; ``h, w`` are
    ``height, width`` (default 64x64) unless ``dynamic_hw``. With ``verify_frames``
    ((batch_size, num_frames, 3, h, w)), the file is published only if onnxruntime's output on them is
    within ``tolerance`` of PyTorch's. ``optimize`` runs the onnxscript graph optimizer (slow for big
    models; onnxruntime optimizes the graph when loading it anyway). Raises :class:`OnnxExportError`.
    """
    out = Path(output_path)
    if out.is_dir():
        raise OnnxExportError(f"{out}: is a folder, expected an .onnx file path")
    if not out.parent.is_dir():
        raise OnnxExportError(f"{out}: the folder {out.parent} does not exist")
    wrapper = export_ready_model(model)
    if verify_frames is not None:
        verify_frames = verify_frames.unsqueeze(0) if verify_frames.dim() == 4 else verify_frames
        if verify_frames.dim() != 5:
            raise OnnxExportError(
                f"verification frames must be (n, T, 3, h, w), got {tuple(verify_frames.shape)}"
            )
        if height is None and width is None:  # export at the size of the verification frames
            height, width = verify_frames.shape[-2:]
    if height is None or width is None:
        if not dynamic_hw:
            raise OnnxExportError("a fixed-size export needs the height and the width")
        height, width = height or DEFAULT_SIZE[0], width or DEFAULT_SIZE[1]
    _check_export_args(wrapper, num_frames, height, width, dynamic_hw, opset, exporter, batch_size)
    if verify_frames is not None:  # fail before the (long) export
        spec = OnnxInputSpec(
            batch_size, num_frames, None if dynamic_hw else height, None if dynamic_hw else width
        )
        _check_input(spec, verify_frames, f"{out} (verification frames)")
    example = torch.rand(batch_size, num_frames, 3, height, width, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    with atomic_path(out) as tmp:
        try:
            _export_to_file(wrapper, example, tmp, dynamic_hw, opset, exporter, optimize)
        except OnnxExportError:
            raise
        except Exception as exc:
            raise OnnxExportError(f"{out}: ONNX export failed ({first_line(exc, with_type=True)})") from exc
        size = tmp.stat().st_size
        max_diff = None
        if verify_frames is not None:
            max_diff = verify_onnx(tmp, model, verify_frames, name=str(out))
            if not max_diff <= tolerance:  # also catches NaN
                raise OnnxExportError(
                    f"{out}: onnxruntime's output differs from PyTorch's by {max_diff:.3g} > {tolerance:g} "
                    "on the verification frames: not written"
                )
    seconds = time.perf_counter() - start
    return OnnxExportResult(
        out, num_frames, height, width, dynamic_hw, opset, exporter, size, seconds, max_diff
    )


# ---------------------------------------------------------------------------------------- running
@dataclass
class OnnxInputSpec:
    """The input an exported file takes: ``None`` for a dynamic axis."""

    batch_size: int | None
    num_frames: int | None
    height: int | None
    width: int | None


def onnx_session(path: PathLike):  # -> onnxruntime.InferenceSession (optional dependency)
    """An onnxruntime CPU session of ``path`` with PyTorch's thread count (OnnxExportError if unloadable)."""
    p = Path(path)
    if not p.is_file():
        raise OnnxExportError(f"{p}: ONNX file not found")
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxExportError("onnxruntime is not installed: pip install -e '.[onnx]'") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    options.intra_op_num_threads = torch.get_num_threads()  # as many threads as PyTorch uses
    try:
        return ort.InferenceSession(str(p), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxExportError(
            f"{p}: onnxruntime cannot load it ({first_line(exc, with_type=True)})"
        ) from None


def onnx_input_spec(session) -> OnnxInputSpec:
    """The (batch, T, h, w) of the session's 5-D input, ``None`` where the axis is dynamic."""
    shape = session.get_inputs()[0].shape
    if len(shape) != 5:
        raise OnnxExportError(f"expected a 5-D (n, T, 3, h, w) model input, got shape {shape}")
    dims = [d if isinstance(d, int) else None for d in shape]
    return OnnxInputSpec(dims[0], dims[1], dims[3], dims[4])


def frames_to_tensor(frames: Sequence[np.ndarray]) -> torch.Tensor:
    """RGB uint8 frames (h, w, 3) -> a (1, T, 3, h, w) float32 tensor in [0, 1]."""
    if not frames:
        raise OnnxExportError("no frames given")
    array = np.stack([np.asarray(f) for f in frames])  # (T, h, w, 3)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise OnnxExportError(f"expected RGB uint8 frames (h, w, 3), got {array.dtype} {array.shape[1:]}")
    return torch.from_numpy(array).permute(0, 3, 1, 2).float().div(255).unsqueeze(0).contiguous()


def _check_input(spec: OnnxInputSpec, lqs: torch.Tensor, name: str) -> None:
    """Raise OnnxExportError (one line) when ``lqs`` does not fit the exported input."""
    n, t, c, h, w = lqs.shape
    if spec.num_frames is not None and t != spec.num_frames:
        raise OnnxExportError(f"{name}: the model takes chunks of {spec.num_frames} frames, got {t}")
    if spec.batch_size is not None and n != spec.batch_size:
        raise OnnxExportError(f"{name}: the model takes batches of {spec.batch_size}, got {n}")
    if c != 3:
        raise OnnxExportError(f"{name}: the model takes 3 (RGB) channels, got {c}")
    fixed_h, fixed_w = spec.height, spec.width
    if (fixed_h is not None and h != fixed_h) or (fixed_w is not None and w != fixed_w):
        raise OnnxExportError(
            f"{name}: the model takes {fixed_w or 'any'}x{fixed_h or 'any'} frames only (fixed-size "
            f"export), got {w}x{h}: export with this size or with dynamic height/width"
        )
    if fixed_h is None and not DYNAMIC_MIN_SIZE <= h <= DYNAMIC_MAX_SIZE:
        raise OnnxExportError(
            f"{name}: the model takes heights in [{DYNAMIC_MIN_SIZE}, {DYNAMIC_MAX_SIZE}], got {h}"
        )
    if fixed_w is None and not DYNAMIC_MIN_SIZE <= w <= DYNAMIC_MAX_SIZE:
        raise OnnxExportError(
            f"{name}: the model takes widths in [{DYNAMIC_MIN_SIZE}, {DYNAMIC_MAX_SIZE}], got {w}"
        )


def run_onnx(
    onnx_path: PathLike, lqs: torch.Tensor | np.ndarray, session=None, name: str | None = None
) -> np.ndarray:
    """Run the ONNX file (or an open ``session`` of it) on ``lqs`` (n, T, 3, h, w) float in [0, 1]."""
    name = name or str(onnx_path)
    session = session if session is not None else onnx_session(onnx_path)
    x = torch.as_tensor(lqs, dtype=torch.float32)
    if x.dim() != 5:
        raise OnnxExportError(f"{name}: expects (n, T, 3, h, w) input, got shape {tuple(x.shape)}")
    _check_input(onnx_input_spec(session), x, name)
    return session.run(None, {session.get_inputs()[0].name: x.contiguous().numpy()})[0]


@torch.no_grad()
def pytorch_output(model: nn.Module, lqs: torch.Tensor) -> torch.Tensor:
    """The PyTorch network's output for ``lqs`` (n, T, 3, h, w), on the model's device, as CPU float32."""
    net = _generator_of(model)
    param = next(net.parameters())
    return net(lqs.to(device=param.device, dtype=param.dtype)).float().cpu()


def verify_onnx(
    onnx_path: PathLike,
    model: nn.Module,
    frames: torch.Tensor | Sequence[np.ndarray],
    name: str | None = None,
) -> float:
    """Max |ONNX (onnxruntime, CPU) - PyTorch| on ``frames`` ((n, T, 3, h, w) in [0, 1] or RGB uint8)."""
    lqs = frames if isinstance(frames, torch.Tensor) else frames_to_tensor(frames)
    if lqs.dim() == 4:
        lqs = lqs.unsqueeze(0)
    lqs = lqs.float()
    name = name or str(onnx_path)
    got = torch.from_numpy(run_onnx(onnx_path, lqs, name=name))
    ref = pytorch_output(model, lqs)
    if got.shape != ref.shape:
        raise OnnxExportError(
            f"{name}: output shape {tuple(got.shape)} differs from PyTorch's {tuple(ref.shape)}"
        )
    return float((got - ref).abs().max())
