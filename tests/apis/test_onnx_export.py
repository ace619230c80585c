"""ONNX export of the whole BasicVSR++ model (``basicvsr_archival.apis.onnx_export``), fixed frame size.

The tiny c8n1 network gets random weights made to exercise the alignment: SPyNet's flows scaled to
about a pixel (random SPyNet weights give flows of ~45 px that point out of the frame), the deformable
convolutions and the reconstruction input made 10x stronger, and the last ``conv_offset`` layers
perturbed so the deformable offsets are non-trivial (0.7-2.4 px around the flows). With these the
offset perturbation alone moves the output by ~2e-2, so a graph that lost it fails the 1e-3 check.
The dynamic-size export is tested through the CLI (tests/tools/test_pytorch2onnx.py).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from basicvsr_archival.apis.onnx_export import (
    OnnxExportError,
    export_onnx,
    export_ready_model,
    frames_to_tensor,
    onnx_input_spec,
    onnx_session,
    pytorch_output,
    run_onnx,
    verify_onnx,
)
from basicvsr_archival.models.ops import ModulatedDeformConv2d

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO_ROOT / "configs" / "tiny_basicvsrpp_c8n1.py"
TOL = 1e-3  # the criterion: ONNX output within 1e-3 of PyTorch's on real frames


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """This module runs single-threaded (``one_torch_thread`` in tests/conftest.py)."""
    yield


@pytest.fixture(scope="module")
def model(lively_tiny_model) -> torch.nn.Module:
    """The lively tiny model (shared, not modified by the tests)."""
    return lively_tiny_model()


@pytest.fixture(scope="module")
def clip(reds_crop) -> torch.Tensor:
    """(1, 3, 3, 64, 96): three real frames cropped where the clip has texture and motion, in [0, 1]."""
    return frames_to_tensor(reds_crop(3, 40, 100, 64, 96))


@pytest.fixture(scope="module")
def fixed_export(model, clip, tmp_path_factory):
    """A fixed-size (T=3, 64x96) export, verified on the real clip before it is published."""
    out = tmp_path_factory.mktemp("onnx_fixed") / "tiny_t3_64x96.onnx"
    return export_onnx(model, out, num_frames=3, dynamic_hw=False, verify_frames=clip)


def test_export_matches_pytorch_on_real_frames(model, clip, fixed_export, lively_tiny_model):
    """The ONNX output has the right shape and is within 1e-3 of PyTorch's (and would notice a broken DCN)."""
    res = fixed_export
    assert (res.num_frames, res.height, res.width, res.dynamic_hw) == (3, 64, 96, False)
    assert res.opset >= 17 and res.exporter == "dynamo"
    assert res.max_abs_diff is not None and res.max_abs_diff <= TOL
    got = torch.from_numpy(run_onnx(res.path, clip))
    ref = pytorch_output(model, clip)
    assert got.shape == ref.shape == (1, 3, 3, 256, 384)
    assert torch.isfinite(got).all()
    diff = float((got - ref).abs().max())
    assert diff <= TOL
    assert diff == pytest.approx(res.max_abs_diff, abs=1e-6)
    # the check has teeth: without the offset perturbation PyTorch's output is far from the ONNX one
    unperturbed = pytorch_output(lively_tiny_model(perturb_offsets=False), clip)
    assert float((got - unperturbed).abs().max()) > 10 * TOL


def test_export_file_is_self_contained(fixed_export):
    """One .onnx file (no external data, no temporary file left), readable by others, fixed input shape."""
    import onnx

    folder = fixed_export.path.parent
    assert sorted(p.name for p in folder.iterdir()) == [fixed_export.path.name]
    assert fixed_export.size_bytes == fixed_export.path.stat().st_size > 1_000_000  # SPyNet alone is 5.8 MB
    umask = os.umask(0o22)
    os.umask(umask)
    assert stat.S_IMODE(fixed_export.path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    proto = onnx.load(str(fixed_export.path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    spec = onnx_input_spec(onnx_session(fixed_export.path))
    assert (spec.batch_size, spec.num_frames, spec.height, spec.width) == (1, 3, 64, 96)


def test_fixed_size_refuses_other_sizes(fixed_export, reds_crop):
    """Another frame size or chunk length gets a one-line error naming the file and the accepted size."""
    other = frames_to_tensor(reds_crop(3, 0, 0, 72, 100))
    with pytest.raises(OnnxExportError, match=r"takes 96x64 frames only \(fixed-size export\), got 100x72"):
        run_onnx(fixed_export.path, other)
    with pytest.raises(OnnxExportError, match="takes chunks of 3 frames, got 2"):
        run_onnx(fixed_export.path, torch.rand(1, 2, 3, 64, 96))
    with pytest.raises(OnnxExportError, match=str(fixed_export.path.name)):
        run_onnx(fixed_export.path, other)


def test_wrapper_leaves_the_model_alone(model, clip):
    """The export wrapper works on a pure-PyTorch, never-mirror-extended copy; the model keeps its own."""
    wrapper = export_ready_model(model)
    assert {m.impl for m in wrapper.modules() if isinstance(m, ModulatedDeformConv2d)} == {"pure"}
    assert {m.impl for m in model.modules() if isinstance(m, ModulatedDeformConv2d)} == {None}
    mirrored = torch.cat([clip, clip.flip(1)], dim=1)  # (1, 6, 3, h, w): mirror-extended
    assert model.generator.check_if_mirror_extended(mirrored)
    assert not wrapper.net.check_if_mirror_extended(mirrored)
    assert wrapper.scale == 4 and wrapper.dynamic_hw_supported


def test_failed_verification_writes_nothing(model, tmp_path):
    """OUT appears only after verification passes; the temporary file is removed either way."""
    out = tmp_path / "never.onnx"
    frames = [np.full((64, 64, 3), 128, np.uint8)]
    with pytest.raises(OnnxExportError, match="not written"):
        export_onnx(
            model, out, num_frames=1, dynamic_hw=False, verify_frames=frames_to_tensor(frames), tolerance=-1
        )
    assert list(tmp_path.iterdir()) == []


def test_bad_export_arguments(model, tmp_path):
    """Impossible requests fail at once (before the export) with one-line messages."""
    out = tmp_path / "x.onnx"
    cases = [
        (dict(opset=16), "opset 16 is too old"),
        (dict(exporter="torchscript", dynamic_hw=True), "needs the dynamo exporter"),
        (dict(dynamic_hw=False), "needs the height and the width"),
        (dict(height=32, width=64), r"example size must be in \[64, 4096\]"),
        (dict(num_frames=0, dynamic_hw=False, height=64, width=64), "need >= 1 frame"),
        (dict(verify_frames=torch.rand(1, 2, 3, 64, 64), num_frames=3), "takes chunks of 3 frames, got 2"),
    ]
    for kwargs, message in cases:
        with pytest.raises(OnnxExportError, match=message):
            export_onnx(model, out, **kwargs)
    with pytest.raises(OnnxExportError, match="is a folder"):
        export_onnx(model, tmp_path)
    with pytest.raises(OnnxExportError, match="ONNX file not found"):
        verify_onnx(tmp_path / "missing.onnx", model, torch.rand(1, 1, 3, 64, 64))
    assert list(tmp_path.iterdir()) == []
