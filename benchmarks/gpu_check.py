"""One-command GPU check of BasicVSR++: correctness on CUDA against the CPU, and speed per precision.

Driven by ``benchmarks/gpu_check.sh`` (README, "GPU check")::

    bash benchmarks/gpu_check.sh --prepare    # here: pack the pure-Python dependencies (build/gpu_wheelhouse)
    bash benchmarks/gpu_check.sh              # on the GPU machine: CUDA tests + this script, < 8 minutes
    bash benchmarks/gpu_check.sh --dry-run    # here: the same on the CPU at tiny sizes, < 1 minute

It prints, one figure a line: the device and versions; the deformable convolution of each
implementation on the device against the CPU reference (and against mmcv's recorded output); the
network on the device against the CPU in float32 with TF32 off (tiny c8n1 and c64n7, seeded random
weights with live offsets); the PSNR of fp16/bf16 against fp32; frames/s of c64n7 per precision at
180x320 -> 720x1280; and ``torch.compile`` (time-boxed in a subprocess, skipped past its limit).

Only the standard library is imported at the top: ``--prepare`` / ``--unpack`` run before the
project's dependencies are importable on the GPU machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import zipfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOUSE = REPO / "build" / "gpu_wheelhouse"
TINY_CONFIG = REPO / "configs" / "tiny_basicvsrpp_c8n1.py"
C64N7_CONFIG = REPO / "configs" / "_base_" / "models" / "basicvsr_plusplus_c64n7.py"
# pure-Python packages that `import basicvsr_archival.apis` and `python -m pytest` need beyond torch,
# numpy and opencv (binary wheels, not shipped: the GPU machine has them); each is unpacked there
# only where it does not import already
DEPS = (
    "mmengine", "addict", "yapf", "yapf_third_party", "termcolor", "platformdirs", "rich", "pygments",
    "markdown_it", "mdurl", "yaml", "packaging", "tqdm", "pytest", "_pytest", "pluggy", "iniconfig", "py",
)  # fmt: skip
STUBBED = ("av", "cv2")  # video I/O: replaced by a stand-in that fails on use where missing
REFERENCE = ("reference/dcn_official_io.pt",)
DEMO_FRAMES = "data/reds_demo_000"
SHIPPED_FRAMES = 10
STUB = '''"""Stand-in for {name}, which is not installed here (GPU check): importing works, using it fails."""


class FFmpegError(Exception):
    """So that ``except av.FFmpegError`` clauses still evaluate."""


def __getattr__(attr):
    raise ModuleNotFoundError("{name} is not installed on this machine: the GPU check skips video I/O")
'''
FIGURES: dict[str, Any] = {}


def report(name: str, value: Any, unit: str = "") -> None:
    """Print one figure as ``name  value unit`` and keep it for ``--json``."""
    FIGURES[name] = value
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    print(f"{name:<58} {text} {unit}".rstrip(), flush=True)


# ---------------------------------------------------------------------------------------- wheelhouse
def _module_files(name: str) -> tuple[Path, list[Path]]:
    """(folder the module lives in, its source files) of an importable top-level module or package."""
    spec = importlib.util.find_spec(name)
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        raise SystemExit(f"--prepare: {name} is not installed here (pip install -e '.[tests]')")
    if spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        files = [f for f in sorted(root.rglob("*")) if f.is_file() and "__pycache__" not in f.parts]
        return root.parent, [f for f in files if f.suffix not in (".so", ".pyd", ".pyc")]
    origin = Path(spec.origin)
    return origin.parent, [origin]


def prepare(house: Path, shared: Path) -> None:
    """Pack DEPS (pure-Python sources of the versions installed here) and a little reference data."""
    if house.exists() and any(house.iterdir()) and not (house / "deps.zip").is_file():
        raise SystemExit(f"--prepare: {house} exists and is not a wheelhouse: choose another --house")
    if house.exists():
        shutil.rmtree(house)
    house.mkdir(parents=True)
    with zipfile.ZipFile(house / "deps.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in DEPS:
            base, files = _module_files(name)
            for f in files:
                zf.write(f, f.relative_to(base).as_posix())
    for rel in REFERENCE:
        if (shared / rel).is_file():
            (house / "shared" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared / rel, house / "shared" / rel)
    frames = sorted((shared / DEMO_FRAMES).glob("*.png"))[:SHIPPED_FRAMES]
    for f in frames:
        (house / "shared" / DEMO_FRAMES).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, house / "shared" / DEMO_FRAMES / f.name)
    size = sum(f.stat().st_size for f in house.rglob("*") if f.is_file())
    print(f"packed {len(DEPS)} modules, {len(frames)} REDS frames into {house}: {size / 2**20:.2f} MiB")


def unpack(house: Path, target: Path) -> None:
    """Unpack into ``target`` the DEPS that do not import here, and stand-ins for missing video I/O."""
    missing = [name for name in DEPS if importlib.util.find_spec(name) is None]
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(house / "deps.zip") as zf:
        members = [m for m in zf.namelist() if m.split("/")[0].removesuffix(".py") in missing]
        zf.extractall(target, members)
    stubbed = [name for name in STUBBED if importlib.util.find_spec(name) is None]
    for name in stubbed:
        (target / name).mkdir(exist_ok=True)
        (target / name / "__init__.py").write_text(STUB.format(name=name))
    print(f"unpacked into {target}: {', '.join(missing) or 'nothing (all import already)'}")
    if stubbed:
        print(f"stand-ins (video I/O skipped on this machine): {', '.join(stubbed)}")


# ---------------------------------------------------------------------------------------- helpers
def shared_dir() -> Path | None:
    """``../shared`` beside the repo, else the copy that ``--prepare`` shipped, else None."""
    for cand in (REPO.parent / "shared", HOUSE / "shared"):
        if (cand / DEMO_FRAMES).is_dir() or (cand / REFERENCE[0]).is_file():
            return cand
    return None


def set_tf32(enabled: bool) -> None:
    """TF32 on/off for cuBLAS matmuls and cuDNN convolutions (off: true float32)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def sync(device) -> None:
    """Wait for queued GPU work so that wall-clock timings are real."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_clip(frames: int, height: int, width: int):
    """(1, t, 3, h, w) in [0, 1]: real REDS frames tiled to size where available, else seeded noise."""
    import numpy as np
    import torch

    root = shared_dir()
    paths = sorted((root / DEMO_FRAMES).glob("*.png")) if root else []
    try:
        import cv2

        imgs = [cv2.imread(str(paths[i % len(paths)]))[:, :, ::-1] for i in range(frames)] if paths else []
    except (ImportError, ModuleNotFoundError, TypeError):
        imgs = []
    if not imgs:
        lq = torch.rand(
            frames, 3, height // 4 + 1, width // 4 + 1, generator=torch.Generator().manual_seed(0)
        )
        lq = torch.nn.functional.interpolate(lq, size=(height, width), mode="bilinear")  # smooth, image-like
        return lq.unsqueeze(0)
    tiled = [
        np.tile(i, (-(-height // i.shape[0]), -(-width // i.shape[1]), 1))[:height, :width] for i in imgs
    ]
    return torch.from_numpy(np.stack(tiled).astype(np.float32) / 255.0).permute(0, 3, 1, 2).unsqueeze(0)


def network_config(mid_channels: int, num_blocks: int):
    """The c64n7 base config with the given width and depth (an mmengine Config)."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(C64N7_CONFIG))
    cfg.model.generator.mid_channels = mid_channels
    cfg.model.generator.num_blocks = num_blocks
    return cfg


def build_model(config, device: str, backend: str | None, state: dict | None = None):
    """``init_model`` (with ``backend`` where this version has it), seeded weights with live offsets.

    Without ``state`` the zero-initialised last layers of the offset heads get seeded random weights so
    that the deformable convolutions really sample; with ``state`` that state dict is loaded.
    """
    import torch

    from basicvsr_archival.apis import init_model

    kwargs = {"backend": backend} if backend and "backend" in inspect.signature(init_model).parameters else {}
    torch.manual_seed(0)
    model = init_model(config, None, device, **kwargs)
    if state is None:
        gen = torch.Generator().manual_seed(0)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        for key in sorted(state):
            if ".conv_offset." in key and key.endswith(".6.weight"):
                state[key] = torch.randn(state[key].shape, generator=gen) * 0.02
    model.load_state_dict(state)
    return model, state


def run_model(model, lq, precision: str = "fp32"):
    """Output (1, t, 3, 4h, 4w) float32 of ``model`` on ``lq`` (moved to the model's device)."""
    import torch

    device = next(model.parameters()).device
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
    with torch.inference_mode(), autocast:
        out = model(lq.to(device), mode="tensor")
    return out.float()


def psnr(a, b) -> float:
    """PSNR in dB of ``a`` against ``b`` (both clamped to [0, 1] as saved frames are)."""
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


# ---------------------------------------------------------------------------------------- checks
def check_dcn(device, mid: int, h: int, w: int) -> None:
    """Each deformable-conv implementation on ``device`` vs the CPU pure path (and mmcv's recording)."""
    import torch

    from basicvsr_archival.models.ops.modulated_deform_conv import (
        external_impl_works,
        modulated_deform_conv2d,
        resolve_impl,
    )

    gen = torch.Generator().manual_seed(0)
    c_in, groups = 2 * mid, 16
    args = [
        torch.randn(1, c_in, h, w, generator=gen),
        torch.randn(1, groups * 18, h, w, generator=gen) * 4,  # flow-sized offsets
        torch.rand(1, groups * 9, h, w, generator=gen),
        torch.randn(mid, c_in, 3, 3, generator=gen) * 0.03,
        torch.randn(mid, generator=gen),
    ]
    shape = dict(stride=1, padding=1, dilation=1, groups=1, deform_groups=groups)
    with torch.inference_mode():
        ref = modulated_deform_conv2d(*args, **shape, impl="pure")
    on_dev = [t.to(device) for t in args]
    report(f"dcn auto implementation on {device.type}", resolve_impl(None, on_dev[0], False, 1))
    impls = ["pure", "cpu_fused"] if device.type == "cpu" else ["pure"]
    for name in ("torchvision", "mmcv"):
        if external_impl_works(name, device.type):
            impls.append(name)
        else:
            report(f"dcn {name} on {device.type}", "unavailable (no import or fails its self-check)")
    root = shared_dir()
    official = root / REFERENCE[0] if root else None
    rec = torch.load(official) if official and official.is_file() else None
    for impl in impls:
        with torch.inference_mode():
            run = lambda impl=impl: modulated_deform_conv2d(*on_dev, **shape, impl=impl)  # noqa: E731
            out, seconds = run(), best_time(run, device)
        label = f"dcn {impl} {device.type} vs cpu pure, in {c_in} out {mid} g{groups} {h}x{w}"
        report(f"{label}: max abs diff", (out.cpu() - ref).abs().max().item())
        report(f"dcn {impl} {device.type} time", seconds * 1e3, "ms")
        if rec is not None:
            names = ("x", "offset", "mask", "weight", "bias")
            with torch.inference_mode():
                got = modulated_deform_conv2d(*(rec[k].to(device) for k in names), **rec["args"], impl=impl)
            report(f"dcn {impl} {device.type} vs mmcv recording: max abs diff", _diff(got, rec["output"]))


def _diff(a, b) -> float:
    """Max absolute difference of two tensors on any devices."""
    return (a.float().cpu() - b.float().cpu()).abs().max().item()


def best_time(fn, device, repeats: int = 3) -> float:
    """Minimum wall-clock seconds of ``fn()`` over ``repeats`` runs (after one warm-up)."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def check_network(device, config, label: str, frames: int, h: int, w: int) -> None:
    """The network on ``device`` (backend 'torch') vs the CPU (default backend), float32, TF32 off."""
    cpu_model, state = build_model(config, "cpu", None)
    lq = load_clip(frames, h, w)
    ref = run_model(cpu_model, lq)
    dev_model, _ = build_model(config, str(device), "torch", state)
    out = run_model(dev_model, lq)
    name = f"network {label} {device.type} (torch backend) vs cpu fp32, {frames}x{h}x{w}"
    report(f"{name}: max abs diff", _diff(out, ref))


def bench_precisions(
    device, config, frames: int, h: int, w: int, precisions: list[str], repeats: int
) -> None:
    """Frames/s per precision of the network on ``device``, and PSNR of each against fp32 (TF32 off)."""
    import torch

    model, _ = build_model(config, str(device), "torch")
    lq = load_clip(frames, h, w).to(device)
    reference = None
    for precision in precisions:
        set_tf32(precision == "tf32")
        amp = "fp32" if precision == "tf32" else precision
        try:
            run_model(model, lq[:, :2], amp)  # warm-up: kernels loaded, allocator primed
        except RuntimeError as exc:
            report(f"{precision} on {device.type}", f"unsupported ({str(exc).splitlines()[0][:80]})")
            continue
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times, out = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            out = run_model(model, lq, amp)
            sync(device)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        size = f"{h}x{w} -> {4 * h}x{4 * w}"
        report(f"speed {precision} {size}, {frames} frames", frames / seconds, "frames/s")
        if device.type == "cuda":
            report(f"peak memory {precision}", torch.cuda.max_memory_allocated(device) / 2**20, "MiB")
        if precision == "fp32":
            reference = out
        elif reference is not None:
            report(f"psnr {precision} vs fp32", psnr(out, reference), "dB")
    set_tf32(False)


def compile_worker(args: argparse.Namespace) -> None:
    """(Subprocess) compile the generator, print the compile time and frames/s as one JSON line."""
    import torch

    device = torch.device(args.device)
    model, _ = build_model(network_config(args.mid_channels, args.num_blocks), args.device, "torch")
    net = torch.compile(getattr(model, "generator", model))
    lq = load_clip(args.frames, args.height, args.width).to(device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.compile_precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
    with torch.inference_mode(), autocast:
        start = time.perf_counter()
        net(lq)
        sync(device)
        first = time.perf_counter() - start
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            net(lq)
            sync(device)
            times.append(time.perf_counter() - start)
    result = {"compile_s": first, "frames_per_s": args.frames / statistics.median(times)}
    print("COMPILE " + json.dumps(result), flush=True)


def check_compile(args: argparse.Namespace) -> None:
    """``torch.compile`` in a subprocess killed (with its compile workers) after ``--compile-timeout``."""
    label = f"compile {args.compile_precision} {args.height}x{args.width}, {args.frames} frames"
    if args.compile_timeout <= 0:
        report(label, "skipped (--compile-timeout 0)")
        return
    argv = [sys.executable, __file__, "--compile-worker", *args.worker_argv]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=args.compile_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        report(label, f"skipped (compiling took over {args.compile_timeout:g} s)")
        return
    lines = [line for line in out.splitlines() if line.startswith("COMPILE ")]
    if proc.returncode != 0 or not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1][:120]
        report(label, f"failed (exit {proc.returncode}: {tail})")
        return
    result = json.loads(lines[-1].removeprefix("COMPILE "))
    report(f"{label}: first call (compile)", result["compile_s"], "s")
    report(f"{label}: speed", result["frames_per_s"], "frames/s")


def describe(device) -> None:
    """Device, versions and the backend interface of this checkout."""
    import torch

    from basicvsr_archival.apis import init_model

    report("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)")
    report("torch", torch.__version__)
    report("cuda", torch.version.cuda or "none")
    report("python", sys.version.split()[0])
    has_backend = "backend" in inspect.signature(init_model).parameters
    report(
        "init_model backend argument", "yes ('torch' on the device)" if has_backend else "no (default path)"
    )


def run_checks(args: argparse.Namespace) -> None:
    """All checks in order (the cheap correctness ones first)."""
    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here (use --dry-run for the CPU run)")
    set_tf32(False)
    describe(device)
    start = time.perf_counter()
    check_dcn(device, args.mid_channels, *args.dcn_size)
    check_network(device, str(TINY_CONFIG), "c8n1", *args.compare_size)
    config = network_config(args.mid_channels, args.num_blocks)
    label = f"c{args.mid_channels}n{args.num_blocks}"
    check_network(device, config, label, *args.compare_size)
    bench_precisions(device, config, args.frames, args.height, args.width, args.precisions, args.repeats)
    check_compile(args)
    report("gpu_check total", time.perf_counter() - start, "s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--dry-run`` swaps in CPU-sized defaults."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prepare", action="store_true", help=f"pack the dependencies into --house ({HOUSE})")
    p.add_argument("--unpack", type=Path, metavar="DIR", help="unpack the missing dependencies into DIR")
    p.add_argument(
        "--house", type=Path, default=HOUSE, help="wheelhouse folder (default build/gpu_wheelhouse)"
    )
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (proves the script runs)")
    p.add_argument("--device", default=None, help="default cuda (cpu with --dry-run)")
    p.add_argument("--height", type=int, default=None, help="LR height of the speed runs (default 180)")
    p.add_argument("--width", type=int, default=None, help="LR width of the speed runs (default 320)")
    p.add_argument("--frames", type=int, default=None, help="frames of the speed runs (default 10)")
    p.add_argument("--mid-channels", type=int, default=None, help="network width (default 64)")
    p.add_argument("--num-blocks", type=int, default=None, help="network depth (default 7)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per precision (median)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "tf32", "fp16", "bf16"])
    p.add_argument("--compile-timeout", type=float, default=None, help="seconds (default 150; dry run 10)")
    p.add_argument("--compile-precision", default=None, help="default fp16 (fp32 on the CPU)")
    p.add_argument("--compile-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    dry = args.dry_run
    defaults = {
        "device": "cpu" if dry else "cuda",
        "height": 24 if dry else 180,
        "width": 32 if dry else 320,
        "frames": 3 if dry else 10,
        "mid_channels": 16 if dry else 64,
        "num_blocks": 1 if dry else 7,
        "compile_timeout": 10 if dry else 150,
        "compile_precision": "fp32" if dry else "fp16",
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.dcn_size = (16, 24) if dry else (args.height, args.width)
    args.compare_size = (3, 16, 24) if dry else (5, 64, 96)
    keys = ("device", "height", "width", "frames", "mid_channels", "num_blocks", "compile_precision")
    args.worker_argv = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in keys] + ["--repeats=2"]
    return args


def main(argv: list[str] | None = None) -> None:
    """Prepare / unpack the wheelhouse, run the compile worker, or run all checks."""
    args = parse_args(argv)
    if args.prepare:
        return prepare(args.house, REPO.parent / "shared")
    if args.unpack:
        return unpack(args.house, args.unpack)
    sys.path.insert(0, str(REPO))
    if args.compile_worker:
        return compile_worker(args)
    run_checks(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(FIGURES, indent=2))


if __name__ == "__main__":
    main()
