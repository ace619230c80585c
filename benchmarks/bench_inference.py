"""Inference speed and memory of BasicVSR++, and the cost of its deformable convolution.

Prints, for one machine (CPU model and ISA first: AVX2 vs AVX-512/AMX decides the fast paths):
1. the deformable convolution at the BasicVSR++ alignment shape (in 2*mid, out mid, 3x3,
   16 deform groups, the LR size, batch 1) per implementation, as a multiple of a dense
   ``F.conv2d`` of the same shape (the DCN-to-conv ratio);
2. the full network (default c64n7, x4) on ``--frames`` frames of ``--height x --width`` (real REDS
   frames tiled to size when ../shared has them), in the layout ``init_model`` picks for the device:
   seconds per frame, frames/s and peak memory (CPU: peak resident set size of this process during
   the run, via /proc/self/clear_refs + VmHWM; CUDA: ``torch.cuda.max_memory_allocated``), for each
   ``--backend`` (``init_model``'s: 'auto', 'cpu_kernels', 'torch'), ``--precision`` and ``--conv``
   implementation (of the cpu_kernels backend's settings), with the PSNR of each output against the
   first fp32 one (e.g. the Winograd convolutions against oneDNN's direct ones).

Examples::

    python benchmarks/bench_inference.py                        # CPU, c64n7, 180x320, 10 frames
    python benchmarks/bench_inference.py --model-only --conv native auto --precision fp32 bf16
    python benchmarks/bench_inference.py --model-only --backend auto torch    # kernels vs plain torch
    python benchmarks/bench_inference.py --device cuda --precision fp32 fp16 bf16
    python benchmarks/bench_inference.py --dcn-only --height 1080 --width 1920
    python benchmarks/bench_inference.py --conv-only           # each conv layer: oneDNN vs fast path
    python benchmarks/bench_inference.py --compare main        # auto / torch backends vs another commit

``--compare REF`` times, interleaved in one run (rounds of A B C, median per variant), the whole
c64n7 network through ``init_model`` (default 3 frames of 64x112) in three variants, each a warm
subprocess importing its own tree (``bench_compare_worker.py``): (a) this checkout's ``auto``
backend, (b) its plain-PyTorch ``torch`` backend ("unavailable" where ``init_model`` has no
``backend`` argument), (c) the code of ``REF`` (a temporary ``git worktree``) on its default path.
All three load the same seeded weights and input; it prints seconds per frame per variant, the
speed ratios auto/REF and auto/torch, and each output's max abs difference from REF's.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from basicvsr_archival.models import BasicVSRPlusPlus
from basicvsr_archival.models.backends import BackendSettings, apply_backend, preferred_memory_format
from basicvsr_archival.models.ops import modulated_deform_conv2d
from basicvsr_archival.models.ops.cpu_kernel import load_cpu_kernel
from basicvsr_archival.models.ops.fast_conv import Conv2d, cpu_has_native_bf16, fast_path, nnpack_works
from basicvsr_archival.models.ops.modulated_deform_conv import external_impl_works

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEMO_FRAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "reds_demo_000"
REPO = Path(__file__).resolve().parents[1]
COMPARE_WORKER = Path(__file__).resolve().with_name("bench_compare_worker.py")
BASE_CONFIG = Path("configs") / "_base_" / "models" / "basicvsr_plusplus_c64n7.py"
OLD_BASE_CONFIG = Path("configs") / "_base_" / "basicvsr_plusplus_c64n7.py"  # trees before the layering


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn, repeats: int, device: torch.device) -> float:
    """Minimum wall-clock seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_input(frames: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(1, t, 3, h, w) in [0, 1]: real REDS frames (cropped/tiled to size) when ../shared has them."""
    paths = sorted(DEMO_FRAMES.glob("*.png")) if DEMO_FRAMES.is_dir() else []
    if paths:
        import cv2

        imgs = []
        for i in range(frames):
            img = cv2.imread(str(paths[i % len(paths)]), cv2.IMREAD_COLOR)[:, :, ::-1]
            reps = (-(-height // img.shape[0]), -(-width // img.shape[1]), 1)
            imgs.append(np.tile(img, reps)[:height, :width])
        arr = np.stack(imgs).astype(np.float32) / 255.0  # (t, h, w, 3)
        lq = torch.from_numpy(arr).permute(0, 3, 1, 2)  # (t, 3, h, w)
    else:
        lq = torch.rand(frames, 3, height, width, generator=torch.Generator().manual_seed(0))
    return lq.unsqueeze(0).to(device)  # (1, t, 3, h, w)


def bench_dcn(args: argparse.Namespace, device: torch.device) -> dict:
    """DCN forward at the BasicVSR++ alignment shape vs a dense conv of the same shape."""
    gen = torch.Generator().manual_seed(0)
    c_in, c_out, groups = 2 * args.mid_channels, args.mid_channels, 16
    h, w = args.height, args.width
    x = torch.randn(1, c_in, h, w, generator=gen).to(device)
    weight = (torch.randn(c_out, c_in, 3, 3, generator=gen) * 0.03).to(device)
    bias = torch.randn(c_out, generator=gen).to(device)
    offset = (torch.randn(1, groups * 18, h, w, generator=gen) * 4).to(device)  # flow-sized offsets
    mask = torch.rand(1, groups * 9, h, w, generator=gen).to(device)
    impls = ["pure"]
    auto = "cpu_fused" if device.type == "cpu" and load_cpu_kernel() is not None else "pure"
    if auto != "pure":
        impls.insert(0, auto)
    for name in ("mmcv", "torchvision"):
        if name not in impls and external_impl_works(name, device.type):
            impls.append(name)
    result = {"shape": f"in {c_in}, out {c_out}, 3x3, {groups} deform groups, {h}x{w}, batch 1", "auto": auto}
    layouts = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}
    with torch.inference_mode():
        for layout, fmt in layouts.items():
            # both operators see the same memory layout of input and weight
            xl, wl = x.contiguous(memory_format=fmt), weight.contiguous(memory_format=fmt)
            conv_s = best_of(lambda xl=xl, wl=wl: F.conv2d(xl, wl, bias, padding=1), args.repeats, device)
            result[f"{layout}_conv2d_ms"] = conv_s * 1e3
            for impl in impls:

                def run(impl=impl, xl=xl, wl=wl):
                    return modulated_deform_conv2d(xl, offset, mask, wl, bias, 1, 1, 1, 1, groups, impl=impl)

                dcn_s = best_of(run, args.repeats, device)
                result[f"{layout}_{impl}_ms"] = dcn_s * 1e3
                result[f"{layout}_{impl}_ratio"] = dcn_s / conv_s
    return result


def conv_shapes(args: argparse.Namespace) -> list[tuple[str, int, int, int, int, int]]:
    """(name, c_in, c_out, kernel, h, w) of BasicVSR++'s convolution layers at the LR size."""
    c, h, w = args.mid_channels, args.height, args.width
    hs, ws = -(-h // 32) * 32, -(-w // 32) * 32  # SPyNet's finest level (resized to multiples of 32)
    return [
        ("backbone / residual 3x3", c, c, 3, h, w),
        ("conv_offset in", 3 * c + 4, c, 3, h, w),
        ("conv_offset out", c, 27 * 16, 3, h, w),
        ("reconstruction in", 5 * c, c, 3, h, w),
        ("upsample1", c, 4 * c, 3, h, w),
        ("upsample2", c, 256, 3, 2 * h, 2 * w),
        ("conv_hr", 64, 64, 3, 4 * h, 4 * w),
        ("conv_last", 64, 3, 3, 4 * h, 4 * w),
        ("spynet 8->32 7x7", 8, 32, 7, hs, ws),
        ("spynet 32->64 7x7", 32, 64, 7, hs, ws),
        ("spynet 64->32 7x7", 64, 32, 7, hs, ws),
        ("spynet 16->2 7x7", 16, 2, 7, hs, ws),
    ]


def bench_convs(args: argparse.Namespace) -> list[dict]:
    """Each conv layer shape: oneDNN direct (NCHW, NHWC) vs the ``Conv2d`` fast path in both (CPU, fp32)."""
    rows = []
    gen = torch.Generator().manual_seed(0)
    for name, c_in, c_out, k, h, w in conv_shapes(args):
        conv = Conv2d(c_in, c_out, k, 1, k // 2).eval()
        x = torch.randn(1, c_in, h, w, generator=gen)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        conv_cl = Conv2d(c_in, c_out, k, 1, k // 2).eval()
        conv_cl.load_state_dict(conv.state_dict())
        conv_cl = conv_cl.to(memory_format=torch.channels_last)
        row = {"layer": name, "shape": f"{c_in}->{c_out} {k}x{k} @ {h}x{w}"}
        cpu = torch.device("cpu")
        with torch.inference_mode():
            conv.configure("native", 6), conv_cl.configure("native", 6)
            ref = conv(x)
            row["native_nchw_ms"] = best_of(functools.partial(conv, x), args.repeats, cpu) * 1e3
            row["native_nhwc_ms"] = best_of(functools.partial(conv_cl, x_cl), args.repeats, cpu) * 1e3
            conv.configure("auto", 6), conv_cl.configure("auto", 6)
            row["fast_path"] = fast_path(conv, x, "auto") or "native"
            row["fast_path_nhwc"] = fast_path(conv_cl, x_cl, "auto") or "native"
            row["fast_nchw_ms"] = best_of(functools.partial(conv, x), args.repeats, cpu) * 1e3
            row["fast_nhwc_ms"] = best_of(functools.partial(conv_cl, x_cl), args.repeats, cpu) * 1e3
            row["max_rel_err"] = ((conv(x) - ref).abs().max() / ref.abs().max()).item()
            row["max_rel_err_nhwc"] = ((conv_cl(x_cl) - ref).abs().max() / ref.abs().max()).item()
        best_native = min(row["native_nchw_ms"], row["native_nhwc_ms"])
        row["speedup_vs_best_native"] = best_native / min(row["fast_nchw_ms"], row["fast_nhwc_ms"])
        rows.append(row)
        print(json.dumps(row))
    return rows


def cpu_description() -> dict:
    """CPU model, core count and the vector/matrix extensions that decide the fast paths."""
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if line.startswith("model name"):
            info["cpu"] = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            info["isa"] = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))
            break
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["native_bf16"] = cpu_has_native_bf16()
    info["nnpack"] = nnpack_works()
    return info


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of ``a`` against ``b`` (both in [0, 1], clamped as the saved frames are)."""
    mse = (a.float().clamp(0, 1) - b.float().clamp(0, 1)).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def build_network(
    args: argparse.Namespace,
    device: torch.device,
    backend: str = "torch",
    settings: BackendSettings | None = None,
) -> torch.nn.Module:
    """The ``--mid-channels/--num-blocks`` network (``--checkpoint`` weights) on ``backend`` (init_model)."""
    torch.manual_seed(0)  # the same random weights in every run, so that outputs can be compared
    model = BasicVSRPlusPlus(mid_channels=args.mid_channels, num_blocks=args.num_blocks)
    if args.checkpoint is not None:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        state = state.get("state_dict", state)
        state = {k.removeprefix("generator."): v for k, v in state.items()}
        model.load_state_dict(state, strict=True)
    else:  # random weights: give the zero-initialised offset heads some weight so the DCN really samples
        gen = torch.Generator().manual_seed(0)
        for align in model.deform_align.values():
            last = align.conv_offset[-1]
            last.weight.data.copy_(torch.randn(last.weight.shape, generator=gen) * 0.02)
    return apply_backend(model.to(device).eval(), backend, settings or BackendSettings())  # as init_model


def bench_model(
    args: argparse.Namespace, device: torch.device, precision: str, conv: str, backend: str = "auto"
) -> tuple[dict, torch.Tensor]:
    """Seconds per frame, frames/s and peak memory of the whole network at one precision.

    ``backend`` as ``init_model``'s; ``conv`` is the convolution implementation of its settings
    ('auto', 'native', ...); the activation layout is ``--layout`` ('auto': the one ``init_model``
    picks for the backend and device).
    """
    settings = BackendSettings.from_env().replace(conv_impl=conv)
    fmt = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}.get(args.layout)
    fmt = preferred_memory_format(backend, device, settings) if fmt is None else fmt
    model = build_network(args, device, backend, settings).to(memory_format=fmt)
    lq = load_input(args.frames, args.height, args.width, device)
    dtype = DTYPES[precision]
    autocast = (
        torch.autocast(device_type=device.type, dtype=dtype)
        if dtype != torch.float32
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), autocast:
        model(lq[:, :2])  # warm-up: kernels compiled/loaded, allocator primed
        sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        rss_reset = reset_peak_rss()
        times = []
        for _ in range(args.model_repeats):
            start = time.perf_counter()
            out = model(lq)
            sync(device)
            times.append(time.perf_counter() - start)
    seconds = min(times)
    result = {
        "backend": backend,
        "precision": precision,
        "conv": conv,
        "layout": "nhwc" if fmt == torch.channels_last else "nchw",
        "frames": args.frames,
        "lr_size": f"{args.height}x{args.width}",
        "out_shape": list(out.shape),
        "s_per_frame": seconds / args.frames,
        "frames_per_s": args.frames / seconds,
    }
    if device.type == "cuda":
        result["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    result["peak_rss_mb" if rss_reset else "peak_rss_mb_since_start"] = peak_rss_mb()
    return result, out.float().cpu()


@contextlib.contextmanager
def reference_tree(ref: str):
    """A detached ``git worktree`` of ``ref`` in a temporary folder, removed (and pruned) afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_ref_"))
    tree = tmp / "tree"
    git = ["git", "-C", str(REPO), "worktree"]
    done = subprocess.run([*git, "add", "--detach", str(tree), ref], capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = (done.stderr.strip().splitlines() or ["git failed"])[-1]
        raise SystemExit(f"--compare {ref}: cannot check it out ({reason})")
    try:
        yield tree
    finally:
        subprocess.run([*git, "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([*git, "prune"], capture_output=True)


class CompareVariant:
    """One variant of ``--compare``: a warm worker process importing the package of ``tree``."""

    def __init__(self, name: str, tree: Path, backend: str | None, fallback: bool = False) -> None:
        self.name, self.tree, self.backend, self.fallback = name, tree, backend, fallback
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self.times: list[float] = []

    def start(self, args: argparse.Namespace, state: Path, clip: Path) -> None:
        """Start the worker and wait until its model is built and warm (or it says it is unavailable)."""
        config = self.tree / (BASE_CONFIG if (self.tree / BASE_CONFIG).exists() else OLD_BASE_CONFIG)
        argv = [sys.executable, str(COMPARE_WORKER), "--config", str(config)]
        argv += ["--state", str(state), "--input", str(clip), f"--mid-channels={args.mid_channels}"]
        argv += [f"--num-blocks={args.num_blocks}"] + (["--backend", self.backend] if self.backend else [])
        argv += (["--fallback"] if self.fallback else []) + (
            [f"--threads={args.threads}"] if args.threads else []
        )
        env = {**os.environ, "PYTHONPATH": str(self.tree)}
        self.proc = subprocess.Popen(
            argv, cwd=self.tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.info = self.ask(None)
        if "unavailable" in self.info:
            self.proc.wait()
            self.proc = None

    def ask(self, command: str | None) -> dict:
        """Send ``command`` (if any) and read the worker's one-line JSON answer."""
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"--compare: worker {self.name} exited ({self.proc.wait()}) without answering")
        return json.loads(line)

    def stop(self) -> None:
        """End the worker (if still running)."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def compare_inputs(args: argparse.Namespace, folder: Path) -> tuple[Path, Path]:
    """Seeded c64n7 weights (live offsets) and the input clip, saved for all variants to load."""
    model = build_network(args, torch.device("cpu"))
    state = {f"generator.{k}": v for k, v in model.state_dict().items()}
    torch.save(state, folder / "state.pt")
    torch.save(load_input(args.frames, args.height, args.width, torch.device("cpu")), folder / "clip.pt")
    return folder / "state.pt", folder / "clip.pt"


def time_variants(args: argparse.Namespace, variants: list[CompareVariant], tmp: Path) -> dict:
    """Start the workers, run ``--rounds`` interleaved rounds (A B C A B C ...); their last outputs."""
    state, clip = compare_inputs(args, tmp)
    outputs = {}
    try:
        for v in variants:
            v.start(args, state, clip)
            print(json.dumps({"variant": v.name, **v.info}), flush=True)
        live = [v for v in variants if v.proc is not None]
        for _ in range(args.rounds):
            for v in live:
                v.times.append(v.ask("run")["seconds"])
        for i, v in enumerate(live):
            v.ask(f"save {tmp / f'out{i}.pt'}")
            outputs[v.name] = torch.load(tmp / f"out{i}.pt")
    finally:
        for v in variants:
            v.stop()
    return outputs


def run_compare(args: argparse.Namespace) -> dict:
    """(a) auto, (b) torch, (c) REF: median s/frame, speed ratios and max abs difference from REF's output."""
    with reference_tree(args.compare) as ref_tree, tempfile.TemporaryDirectory(prefix="bench_cmp_") as tmp:
        git = ["git", "-C", str(ref_tree), "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True).stdout.strip()
        ref = CompareVariant(f"ref {args.compare}", ref_tree, None)
        variants = [
            CompareVariant("auto", REPO, "auto", fallback=True),
            CompareVariant("torch", REPO, "torch"),
            ref,
        ]
        outputs = time_variants(args, variants, Path(tmp))
    size = f"c{args.mid_channels}n{args.num_blocks}, {args.frames} frames {args.height}x{args.width}"
    result: dict = {"ref": f"{args.compare} ({commit})", "shape": size, "rounds": args.rounds}
    for v in variants:
        if not v.times:
            result[v.name] = {"unavailable": v.info.get("unavailable")}
            continue
        result[v.name] = {
            "backend": v.info.get("backend"),
            "s_per_frame": statistics.median(v.times) / args.frames,
            "min_s_per_frame": min(v.times) / args.frames,
            "max_abs_diff_vs_ref": (outputs[v.name] - outputs[ref.name]).abs().max().item(),
        }
    for stat, suffix in ((statistics.median, ""), (min, "_best")):  # best of rounds: less host noise
        speed = {v.name: stat(v.times) for v in variants if v.times}
        if "auto" in speed:
            result[f"speed_auto_over_ref{suffix}"] = speed[ref.name] / speed["auto"]
            if "torch" in speed:
                result[f"speed_auto_over_torch{suffix}"] = speed["torch"] / speed["auto"]
    return result


def print_compare(result: dict) -> None:
    """The ``--compare`` figures: JSON, then one readable line per variant and per ratio."""
    print(json.dumps(result), flush=True)
    for name, row in result.items():
        if isinstance(row, dict) and "s_per_frame" in row:
            print(
                f"{name:<16} {row['s_per_frame']:.4f} s/frame (median of {result['rounds']}; "
                f"backend {row['backend']}; max abs diff vs ref {row['max_abs_diff_vs_ref']:.2g})"
            )
        elif isinstance(row, dict):
            print(f"{name:<16} unavailable: {row['unavailable']}")
    for key, label, wanted in (("ref", "ref  ", 0.9), ("torch", "torch", 1.8)):
        if f"speed_auto_over_{key}" in result:
            median, best = result[f"speed_auto_over_{key}"], result[f"speed_auto_over_{key}_best"]
            print(
                f"auto / {label} speed {median:.2f}x (medians; best rounds {best:.2f}x; wanted >= {wanted})"
            )


def main() -> None:
    """Parse arguments, run the benchmarks and print (and optionally save) the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--height", type=int, default=None, help="LR frame height (default 180; --compare 64)"
    )
    parser.add_argument("--width", type=int, default=None, help="LR frame width (default 320; --compare 112)")
    parser.add_argument("--frames", type=int, default=None, help="sequence length (default 10; --compare 3)")
    parser.add_argument("--mid-channels", type=int, default=64)
    parser.add_argument("--num-blocks", type=int, default=7)
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=sorted(DTYPES))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the DCN/conv micro-benchmark")
    parser.add_argument("--model-repeats", type=int, default=1, help="timed runs of the whole model")
    parser.add_argument(
        "--layout",
        choices=("auto", "nchw", "nhwc"),
        default="auto",
        help="activation layout of the model (default auto: the one init_model picks for the device)",
    )
    parser.add_argument(
        "--conv",
        nargs="+",
        default=["auto"],
        choices=("auto", "native", "nnpack", "winograd"),
        help="convolution implementations to time (cpu_kernels settings: 'native' = F.conv2d); "
        "the PSNR of each run is printed against the first fp32 run",
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        default=["auto"],
        choices=("auto", "cpu_kernels", "torch"),
        help="init_model backends to time (default auto); runs interleave with --conv",
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="weights (default: random)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--dcn-only", action="store_true", help="only the DCN-vs-conv micro-benchmark")
    parser.add_argument(
        "--conv-only", action="store_true", help="only the per-layer convolution benchmark (CPU fast paths)"
    )
    parser.add_argument("--model-only", action="store_true", help="only the whole-model benchmark")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument(
        "--compare",
        metavar="REF",
        default=None,
        help="time this checkout's auto and torch backends against the code of git commit/branch REF (CPU)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="--compare: interleaved rounds (median)")
    args = parser.parse_args()
    sizes = (64, 112, 3) if args.compare else (180, 320, 10)
    for key, value in zip(("height", "width", "frames"), sizes):
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    env = {
        **cpu_description(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
    print(json.dumps(env))
    report: dict = {"env": env}
    if args.compare:
        if device.type != "cpu":
            parser.error("--compare times the CPU paths: leave --device at cpu")
        report["compare"] = run_compare(args)
        print_compare(report["compare"])
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2))
        return
    if args.conv_only:
        report["convs"] = bench_convs(args)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2))
        return
    if not args.model_only:
        report["dcn"] = bench_dcn(args, device)
        print(json.dumps(report["dcn"]))
    if not args.dcn_only:
        report["model"] = []
        reference = None  # output of the first fp32 run: the others are compared with it
        runs = [(b, c) for b in args.backend for c in (args.conv if b != "torch" else ["native"])]
        for backend, conv in runs:
            for precision in args.precision:
                res, out = bench_model(args, device, precision, conv, backend)
                if reference is None and precision == "fp32":
                    reference, res["reference"] = out, True
                elif reference is not None:
                    res["psnr_vs_reference_db"] = psnr(out, reference)
                    res["max_abs_diff_vs_reference"] = (out - reference).abs().max().item()
                report["model"].append(res)
                print(json.dumps(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
