"""Issue 12: a plain network; the CPU kernels applied on purpose as a backend (per model, with settings)."""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from basicvsr_archival.models import BasicVSRPlusPlus
from basicvsr_archival.models.backends import (
    BackendSettings,
    apply_backend,
    backend_record,
    cpu_kernels,
    planned_record,
    resolve_backend,
)
from basicvsr_archival.models.ops import fast_conv
from basicvsr_archival.models.ops.cpu_kernel import load_cpu_kernel

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "basicvsr_archival"
TINY_CONFIG = REPO / "configs" / "tiny_basicvsrpp_c8n1.py"
KERNEL_MODULES = [
    "basicvsr_archival.models.ops.cpu_kernel",
    "basicvsr_archival.models.ops.cpu_fused",
    "basicvsr_archival.models.ops.fast_conv",
    "basicvsr_archival.models.ops.winograd",
    "basicvsr_archival.models.backends",
    "basicvsr_archival.models.backends.cpu_kernels",
]
NETWORK_FILES = ["basicvsr_plusplus.py", "spynet.py", "common.py", "basicvsr.py"]
needs_kernels = pytest.mark.skipif(load_cpu_kernel() is None, reason="no C compiler for the CPU kernels")


def _tiny(seed: int = 0) -> BasicVSRPlusPlus:
    """A c8n1 network whose offset heads are non-zero (so the DCN really samples)."""
    torch.manual_seed(seed)
    model = BasicVSRPlusPlus(mid_channels=8, num_blocks=1).eval()
    for align in model.deform_align.values():
        nn.init.normal_(align.conv_offset[-1].weight, std=0.05)
    return model


def _lqs() -> torch.Tensor:
    """(1, 4, 3, 64, 80) frames in [0, 1]."""
    return torch.rand(1, 4, 3, 64, 80, generator=torch.Generator().manual_seed(1))


class _Counter:
    """Counts calls of the backend's fused kernels (wrapped where the backend module looks them up)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = {"dcn": 0, "warp": 0, "winograd": 0}
        for name, attr, mod in (
            ("dcn", "flow_guided_deform_conv_cpu", cpu_kernels),
            ("warp", "flow_warp_cpu", cpu_kernels),
            ("winograd", "winograd_conv3x3", fast_conv),
        ):
            monkeypatch.setattr(mod, attr, self._wrap(name, getattr(mod, attr)))

    def _wrap(self, name, fn):
        def counted(*args, **kwargs):
            self.calls[name] += 1
            return fn(*args, **kwargs)

        return counted

    def total(self) -> int:
        """All counted calls so far."""
        return sum(self.calls.values())


def test_network_import_loads_no_kernel_module():
    # a fresh interpreter: importing and running the network loads none of the kernel modules
    code = (
        "import sys, torch, json\n"
        "from basicvsr_archival.models.basicvsr_plusplus import BasicVSRPlusPlus\n"
        "net = BasicVSRPlusPlus(mid_channels=8, num_blocks=1).eval()\n"
        "with torch.no_grad():\n"
        "    out = net(torch.rand(1, 2, 3, 64, 64))\n"
        "print(json.dumps([list(out.shape), sorted(m for m in sys.modules if m.startswith('basicvsr'))]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    shape, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert shape == [1, 2, 3, 256, 256]
    assert "basicvsr_archival.models.basicvsr_plusplus" in loaded
    assert [m for m in KERNEL_MODULES if m in loaded] == []


def test_network_files_import_nothing_from_kernels_or_backends():
    kernel_names = {"cpu_kernel", "cpu_fused", "fast_conv", "winograd", "backends"}
    for name in NETWORK_FILES:
        tree = ast.parse((PACKAGE / "models" / name).read_text())
        imported = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                imported += [node.module or "", *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                imported += [a.name for a in node.names]
        bad = [m for m in imported if kernel_names & set(m.split("."))]
        assert bad == [], f"{name} imports {bad}"
        assert "nn.Conv2d(" in (PACKAGE / "models" / name).read_text() or name == "basicvsr.py"


def test_os_environ_is_read_in_env_py_and_the_launcher_only():
    found = sorted(
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "os.environ" in p.read_text()
    )
    assert found == ["engine/launcher.py", "utils/env.py"]


@needs_kernels
def test_cpu_kernels_backend_matches_the_plain_network_and_really_runs(monkeypatch):
    plain = _tiny()
    fast = apply_backend(copy.deepcopy(plain), "cpu_kernels")
    assert list(fast.state_dict()) == list(plain.state_dict())  # same keys, same tensors
    assert type(fast) is cpu_kernels.FusedBasicVSRPlusPlus and type(plain) is BasicVSRPlusPlus
    assert type(fast.conv_last) is fast_conv.Conv2d and type(plain.conv_last) is nn.Conv2d
    counter = _Counter(monkeypatch)
    lqs = _lqs()
    with torch.no_grad():
        ref = plain(lqs)
        assert counter.total() == 0  # the plain network never calls a kernel
        got = fast(lqs)
        # 4 branches x 3 aligned frames; the 3x3 layers with >= 16 outputs (offsets, upsampling)
        assert counter.calls["dcn"] == 12 and counter.calls["winograd"] > 10
        got_cl = copy.deepcopy(fast).to(memory_format=torch.channels_last)(lqs)
    assert got.shape == ref.shape == (1, 4, 3, 256, 320)
    assert (got - ref).abs().max().item() < 1e-4
    assert (got_cl - ref).abs().max().item() < 1e-4
    assert ref.abs().max().item() > 0.1


@needs_kernels
def test_two_models_with_different_backends_in_one_process(monkeypatch):
    a = apply_backend(_tiny(), "torch")
    b = apply_backend(_tiny(), "cpu_kernels", BackendSettings(winograd_tile=4))
    c = apply_backend(_tiny(), "cpu_kernels", BackendSettings(conv_impl="native"))
    counter = _Counter(monkeypatch)
    lqs = _lqs()
    with torch.no_grad():
        out_a = a(lqs)
        assert counter.total() == 0
        out_b = b(lqs)
        wino_b = counter.calls["winograd"]
        assert counter.calls["dcn"] == 12 and wino_b > 10
        out_a2 = a(lqs)  # a stays plain after b ran
        out_c = c(lqs)
    assert counter.calls["winograd"] == wino_b  # c: native convolutions, still the fused DCN
    assert counter.calls["dcn"] == 24
    assert torch.equal(out_a, out_a2)
    assert (out_b - out_a).abs().max().item() < 1e-4 and (out_c - out_a).abs().max().item() < 1e-4
    assert b.conv_last.winograd_tile == 4 and c.conv_last.conv_impl == "native"
    assert backend_record(a)["backend"] == "torch"
    assert backend_record(b)["settings"]["winograd_tile"] == 4
    assert backend_record(c)["settings"]["conv_impl"] == "native"


def test_torch_backend_puts_the_plain_classes_back():
    model = apply_backend(_tiny(), "cpu_kernels")
    apply_backend(model, "torch")
    assert type(model) is BasicVSRPlusPlus
    assert all(type(m).__module__ != cpu_kernels.__name__ for m in model.modules())
    assert all(type(m) is nn.Conv2d for m in model.modules() if isinstance(m, nn.Conv2d))
    assert all("backend_settings" not in m.__dict__ for m in model.modules())


def test_backend_record_contents(monkeypatch):
    plain = backend_record(_tiny())
    assert plain["backend"] == "torch" and plain["settings"] is None
    assert plain["threads"] == torch.get_num_threads()  # plain torch: pinned to the count
    assert plain["torch"] == torch.__version__.split("+")[0]
    assert plain["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    settings = BackendSettings(conv_impl="winograd", winograd_tile=4, dcn_impl="cpu_fused", dcn_chunk_mb=64)
    rec = backend_record(apply_backend(_tiny(), "cpu_kernels", settings))
    assert rec["backend"] == "cpu_kernels" and rec["threads"] == "any"
    assert rec["settings"] == {
        "conv_impl": "winograd", "winograd_tile": 4, "dcn_impl": "cpu_fused", "dcn_chunk_mb": 64.0,
        "malloc_tune": True,
    }  # fmt: skip
    assert "kernel_variant" in rec and rec["c_kernels"] == (load_cpu_kernel() is not None)
    assert BackendSettings.from_dict(rec["settings"]) == settings
    assert json.loads(json.dumps(rec)) == rec  # manifest-ready
    # 'auto' resolves per model: CUDA or another dtype is plain torch
    assert resolve_backend("auto", "cuda") == "torch"
    assert resolve_backend("cpu_kernels", "cpu", torch.bfloat16) == "torch"
    assert planned_record("torch")["backend"] == "torch"
    with pytest.raises(ValueError, match="backend='fast'"):
        apply_backend(_tiny(), "fast")
    with pytest.raises(ValueError, match="dcn_impl='cuda'"):
        BackendSettings(dcn_impl="cuda")


@needs_kernels
def test_init_model_applies_the_backend():
    from basicvsr_archival.apis import init_model

    auto = init_model(TINY_CONFIG, device="cpu")
    plain = init_model(TINY_CONFIG, device="cpu", backend="torch")
    native = init_model(
        TINY_CONFIG, device="cpu", backend="cpu_kernels", backend_settings=BackendSettings(conv_impl="native")
    )
    assert backend_record(auto)["backend"] == "cpu_kernels"
    assert backend_record(plain)["backend"] == "torch"
    assert backend_record(native)["settings"]["conv_impl"] == "native"
    assert list(auto.state_dict()) == list(plain.state_dict())


def test_backend_flags_of_the_demo_and_tools_restore():
    from basicvsr_archival.models.backends.settings import overrides_from_arguments
    from basicvsr_archival.tools import demo
    from basicvsr_archival.tools import restore as tool

    args = tool.parse_args(["a.archive", "-o", "out.mkv", "--backend", "torch", "--winograd-tile", "4"])
    assert args.backend == "torch" and overrides_from_arguments(args) == {"winograd_tile": 4}
    args = tool.parse_args(["a.archive", "-o", "out.mkv"])
    assert args.backend is None and overrides_from_arguments(args) == {}  # the archive's record
    args = demo.parse_args(["cfg.py", "ckpt.pth", "in", "out", "--conv-impl", "native", "--dcn-impl", "pure"])
    assert args.backend == "auto"
    assert overrides_from_arguments(args) == {"conv_impl": "native", "dcn_impl": "pure"}
    with pytest.raises(SystemExit):
        tool.parse_args(["a.archive", "-o", "out.mkv", "--backend", "fast"])
