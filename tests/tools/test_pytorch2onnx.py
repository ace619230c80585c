"""tools/pytorch2onnx.py end to end: a dynamic-size export verified on real frames, then a second size.

Same test model as tests/apis/test_onnx_export.py (tiny c8n1, random weights made to exercise the
alignment, perturbed offsets), passed to the CLI as an official-layout checkpoint. T=2 keeps the
(several times slower) dynamic-size export short; tests/apis/test_onnx_export.py covers T=3.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import cv2
import pytest
import torch

from basicvsr_archival.utils.cli import run_cli

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from basicvsr_archival.apis.onnx_export import (
    OnnxExportError,
    frames_to_tensor,
    onnx_input_spec,
    onnx_session,
    pytorch_output,
    run_onnx,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO_ROOT / "configs" / "tiny_basicvsrpp_c8n1.py"
TOL = 1e-3
T = 2


def _tool():
    """The tool's module (``tools/pytorch2onnx.py`` runs its ``main``)."""
    return importlib.import_module("basicvsr_archival.tools.pytorch2onnx")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """This module runs single-threaded (``one_torch_thread`` in tests/conftest.py)."""
    yield


@pytest.fixture(scope="module")
def model(lively_tiny_model) -> torch.nn.Module:
    """The lively tiny model (shared, not modified by the tests)."""
    return lively_tiny_model()


@pytest.fixture(scope="module")
def cli_export(model, reds_crop, tmp_path_factory):
    """Run the CLI (default: dynamic H/W) with --verify on a folder of 64x96 real frames."""
    work = tmp_path_factory.mktemp("pytorch2onnx")
    frames_dir = work / "frames"
    frames_dir.mkdir()
    for i, frame in enumerate(reds_crop(T, 40, 100, 64, 96)):
        cv2.imwrite(str(frames_dir / f"{i:08d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    ckpt = work / "tiny.pth"
    state = {f"generator.{k}": v for k, v in model.generator.state_dict().items()}
    torch.save({"meta": {}, "state_dict": state}, ckpt)
    out = work / "out" / "tiny_t2.onnx"  # the tool creates the missing folder
    tool = _tool()
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = run_cli(
            tool.main,
            [str(TINY_CONFIG), str(ckpt), str(out), "--num-frames", str(T), "--verify", str(frames_dir)],
        )
    return dict(rc=rc, out=out, stdout=stdout.getvalue(), stderr=stderr.getvalue(), frames_dir=frames_dir)


def test_cli_exports_and_verifies_on_real_frames(cli_export, model, reds_crop):
    """Exit 0, a dynamic-size file, the printed verification within 1e-3 and matching our own check."""
    assert cli_export["rc"] == 0, cli_export["stderr"]
    out: Path = cli_export["out"]
    text = cli_export["stdout"]
    assert f"wrote {out} (" in text and " MB, " in text
    size = int(re.search(r"MB, (\d+) bytes", text).group(1))
    assert size == out.stat().st_size
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary file left
    printed = float(re.search(r"max \|ONNX - PyTorch\| = (\S+)", text).group(1))
    assert printed <= TOL
    spec = onnx_input_spec(onnx_session(out))
    assert (spec.batch_size, spec.num_frames, spec.height, spec.width) == (1, T, None, None)
    clip = frames_to_tensor(reds_crop(T, 40, 100, 64, 96))
    got = torch.from_numpy(run_onnx(out, clip))
    ref = pytorch_output(model, clip)
    assert got.shape == ref.shape == (1, T, 3, 256, 384)
    assert float((got - ref).abs().max()) <= TOL


def test_dynamic_onnx_second_size(cli_export, model, reds_crop, lively_tiny_model):
    """The same file on 72x100 real frames (not a multiple of 32): right shape, within 1e-3, sensitive."""
    clip = frames_to_tensor(reds_crop(T, 60, 150, 72, 100))
    got = torch.from_numpy(run_onnx(cli_export["out"], clip))
    ref = pytorch_output(model, clip)
    assert got.shape == ref.shape == (1, T, 3, 288, 400)
    assert float((got - ref).abs().max()) <= TOL
    unperturbed = pytorch_output(lively_tiny_model(perturb_offsets=False), clip)
    assert float((got - unperturbed).abs().max()) > 2 * TOL  # the offsets are in the graph (4e-3 at T=2)
    with pytest.raises(OnnxExportError, match=r"heights in \[64, 4096\], got 48"):
        run_onnx(cli_export["out"], torch.rand(1, T, 3, 48, 96))


def test_cli_help(capsys):
    """--help documents the arguments and exits 0; the CLI's defaults are the API's."""
    from basicvsr_archival.apis import onnx_export

    tool = _tool()
    with pytest.raises(SystemExit) as exc:
        tool.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--num-frames", "--height", "--no-dynamic-hw", "--opset", "--verify", "--cfg-options"):
        assert flag in text
    assert (tool.DEFAULT_NUM_FRAMES, tool.DEFAULT_OPSET) == (
        onnx_export.DEFAULT_NUM_FRAMES,
        onnx_export.DEFAULT_OPSET,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}", "none", "{tmp}/a.onnx"], "config file not found"),
        (["{config}", "{tmp}/nope.pth", "{tmp}/a.onnx"], "checkpoint file not found"),
        (["{config}", "none", "{config}"], "refusing to overwrite the input"),
        (["{config}", "none", "{tmp}/a.onnx", "--verify", "{tmp}/no_frames"], "no such file or folder"),
        (["{config}", "none", "{tmp}/a.onnx", "--verify", "{tmp}/empty"], "no image frames"),
        (["{config}", "none", "{tmp}", "--no-dynamic-hw", "--height", "64", "--width", "64"], "is a folder"),
        (["{config}", "none", "{tmp}/a.onnx", "--opset", "16"], "opset 16 is too old"),
    ],
)
def test_cli_bad_input(args, message, tmp_path, capsys):
    """Bad input: exit code 1 and one line 'error: <file>: <problem>' on stderr, nothing written."""
    (tmp_path / "empty").mkdir()
    subs = dict(missing=str(tmp_path / "missing.py"), config=str(TINY_CONFIG), tmp=str(tmp_path))
    rc = run_cli(_tool().main, [a.format(**subs) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 1, err
    assert len(lines) == 1 and message in lines[0], err
    assert not list(tmp_path.glob("*.onnx*")) and not list(tmp_path.glob(".*"))
    assert TINY_CONFIG.read_text().startswith('"""A tiny BasicVSR++')


def test_cli_bad_arguments(capsys):
    """Contradictory arguments are argparse errors (exit code 2)."""
    tool = _tool()
    for args in (
        [str(TINY_CONFIG), "none", "x.onnx", "--height", "64"],
        [str(TINY_CONFIG), "none", "x.onnx", "--no-dynamic-hw"],
        [str(TINY_CONFIG), "none", "x.onnx", "--num-frames", "0"],
    ):
        with pytest.raises(SystemExit) as exc:
            tool.main(args)
        assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
