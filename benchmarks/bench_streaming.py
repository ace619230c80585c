"""Streaming restoration: is host memory bounded by the chunk, and do overlapped chunks match the whole video?

Two measurements (both by default; ``--skip-rss`` / ``--skip-psnr`` leave one out):

* **Peak RSS.** ffmpeg (``testsrc2`` + a sine audio track, x264 + AAC) makes a short and a long video of
  the same size (``--frames 30,300``, ``--size 160x96``). Each is restored in a fresh Python process
  through the demo (``demo/restoration_video_demo.py``: decode -> super-resolve in chunks of
  ``--max-seq-len`` frames with ``--overlap`` -> x264 encode + audio copy into an .mp4); the child
  reports its peak RSS (``VmHWM``; the ffmpeg encoder is a separate process, not counted). The
  long/short ratio should be <= 1.2 if memory is bounded by the chunk. For scale the script also
  prints how much holding the long video's output frames would have added.
* **Chunked vs whole sequence, trained model.** GT = the 21 real REDS frames (320x180), LR = their x4
  MATLAB-bicubic downscale (:func:`~basicvsr_archival.utils.imresize.imresize`). The tiny c8n1 model is
  trained from scratch on them (:func:`train_tiny_model`: zero-flow SPyNet kept frozen, last conv
  scaled down so training starts near bilinear upscaling, Adam, MSE, ``--train-iters`` iterations of
  ``--clip``-frame clips; the weights are cached in ``--work-dir``). Then PSNR against GT of the
  whole-sequence restoration and of chunked ones (``max_seq_len`` 20, overlap 0 and the default) is
  printed, with the difference (target <= 0.05 dB) and the PSNR of chunked vs whole.

    nice -n 19 python benchmarks/bench_streaming.py                 # both parts, ~10-20 min on 2 cores
    python benchmarks/bench_streaming.py --skip-psnr --size 320x180 --threads 2
    python benchmarks/bench_streaming.py --skip-rss --train-iters 200
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from basicvsr_archival.apis.streaming import default_overlap  # noqa: E402
from basicvsr_archival.utils.ffmpeg import run_ffmpeg  # noqa: E402

DEMO = ROOT / "demo" / "restoration_video_demo.py"
TINY_CONFIG = ROOT / "configs" / "tiny_basicvsrpp_c8n1.py"
REDS = ROOT.parent / "shared" / "data" / "reds_demo_000"
SCALE = 4
CHILD = "--child-demo"  # internal: ``bench_streaming.py --child-demo THREADS DEMO_ARGS...`` is one demo run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description="Peak RSS of streaming restoration; chunked vs whole PSNR.")
    parser.add_argument("--config", default=str(TINY_CONFIG), help="model config (default: tiny c8n1)")
    parser.add_argument("--checkpoint", default="none", help="checkpoint for the RSS runs (default: none)")
    parser.add_argument("--size", default="160x96", help="WxH of the generated videos (default 160x96)")
    parser.add_argument("--frames", default="30,300", help="frame counts of the two videos (default 30,300)")
    parser.add_argument("--max-seq-len", type=int, default=20, help="frames per chunk (default 20)")
    parser.add_argument("--overlap", type=int, default=None, help="context frames (default: the API's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--work-dir", default=str(ROOT / "work_dirs" / "bench_streaming"))
    parser.add_argument("--reds", default=str(REDS), help="folder of the real frames (GT)")
    parser.add_argument("--train-iters", type=int, default=100, help="training iterations (default 100)")
    parser.add_argument("--clip", type=int, default=5, help="frames per training clip (default 5)")
    parser.add_argument("--skip-rss", action="store_true", help="leave out the peak RSS part")
    parser.add_argument("--skip-psnr", action="store_true", help="leave out the chunked-vs-whole PSNR part")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------- peak RSS
def make_video(path: Path, frames: int, width: int, height: int, fps: int = 25) -> Path:
    """``frames`` of ffmpeg's testsrc2 (x264) with a 440 Hz sine track (AAC) of the same duration."""
    args = ["-y", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}"]
    args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-map", "0:v", "-map", "1:a"]
    args += ["-frames:v", str(frames), "-t", str(frames / fps), "-c:v", "libx264", "-pix_fmt", "yuv420p"]
    run_ffmpeg([*args, "-preset", "veryfast", "-c:a", "aac", str(path)], f"generating {path.name}")
    return path


def _vm_hwm_kb() -> int:
    """Peak resident set size of this process (kB), from /proc (ru_maxrss where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def child_main(threads: int, demo_args: list[str]) -> int:
    """Run the demo in this process and print one JSON line: exit code, seconds, peak RSS (kB)."""
    import importlib.util

    torch.set_num_threads(threads)

    spec = importlib.util.spec_from_file_location("restoration_video_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    t0 = time.perf_counter()
    code = demo.main(demo_args)
    seconds = time.perf_counter() - t0
    print(json.dumps({"rc": code, "seconds": seconds, "vm_hwm_kb": _vm_hwm_kb()}))
    return code


def measure(video: Path, out: Path, args: argparse.Namespace) -> dict:
    """Restore ``video`` into ``out`` with the demo in a fresh process; its JSON report."""
    cmd = [sys.executable, str(Path(__file__).resolve()), CHILD, str(args.threads)]
    cmd += [args.config, args.checkpoint, str(video), str(out), "--max-seq-len", str(args.max_seq_len)]
    if args.overlap is not None:
        cmd += ["--overlap", str(args.overlap)]
    cmd += ["--device", "cpu", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"restoring {video} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def rss_part(args: argparse.Namespace) -> float:
    """Generate the videos, restore each in a fresh process, print the table; returns the RSS ratio."""
    from basicvsr_archival.utils.ffmpeg import probe_video

    width, height = (int(v) for v in args.size.lower().split("x"))
    counts = [int(v) for v in args.frames.split(",")]
    overlap = args.overlap if args.overlap is not None else default_overlap(args.max_seq_len)
    print(f"peak RSS: {args.size} testsrc2 + AAC, chunks of {args.max_seq_len} frames, overlap {overlap},")
    print(f"  {args.threads} torch thread(s), config {Path(args.config).name}, checkpoint {args.checkpoint}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_streaming_") as tmp:
        for n in counts:
            video = make_video(Path(tmp) / f"in_{n}.mp4", n, width, height)
            out = Path(tmp) / f"out_{n}.mp4"
            rep = measure(video, out, args)
            info = probe_video(out)
            if info.num_frames != n or not info.has_audio:
                raise SystemExit(
                    f"{out}: {info.num_frames} frames, audio {info.has_audio}; expected {n} + audio"
                )
            rows.append((n, rep))
            out.unlink()
    print(f"  {'frames':>6} {'seconds':>8} {'s/frame':>8} {'peak RSS MB':>12}")
    for n, rep in rows:
        print(f"  {n:>6} {rep['seconds']:>8.1f} {rep['seconds'] / n:>8.3f} {rep['vm_hwm_kb'] / 1024:>12.1f}")
    (n0, small), (n1, large) = rows[0], rows[-1]
    ratio = large["vm_hwm_kb"] / small["vm_hwm_kb"]
    held = (n1 - n0) * (SCALE * width) * (SCALE * height) * 3 / 2**20
    print(f"  peak RSS ratio {n1}/{n0} frames: {ratio:.3f} (target <= 1.2)")
    print(
        f"  (holding the {n1 - n0} extra output frames as uint8 would add {held:.0f} MB: "
        f"ratio >= {(small['vm_hwm_kb'] / 1024 + held) / (small['vm_hwm_kb'] / 1024):.2f})"
    )
    return ratio


# ---------------------------------------------------------------------------------------- PSNR
def reds_pairs(folder: Path | str, count: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(LR, GT) RGB uint8 frames: GT = the PNG frames of ``folder`` (sorted), LR = MATLAB-bicubic x1/4."""
    from basicvsr_archival.utils.imresize import imresize

    files = sorted(Path(folder).glob("*.png"))[:count]
    if not files:
        raise SystemExit(f"{folder}: no PNG frames")
    gt = [cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in files]
    return [imresize(g, 1 / SCALE) for g in gt], gt


def mean_psnr(outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> float:
    """Mean per-frame PSNR (dB, RGB, 8-bit)."""
    from basicvsr_archival.evaluation.metrics import psnr

    return float(np.mean([psnr(o, t) for o, t in zip(outputs, targets, strict=True)]))


def train_tiny_model(
    config: Path | str,
    lq: Sequence[np.ndarray],
    gt: Sequence[np.ndarray],
    iters: int,
    clip: int = 5,
    lr: float = 2e-3,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> torch.nn.Module:
    """Train ``config``'s restorer from scratch on whole (LR, GT) frames; returns it in eval mode (CPU).

    Start: seeded random weights with a zero-flow SPyNet (:func:`~basicvsr_archival.archival.finetune.
    initial_state`), kept frozen, and the last convolution scaled by 0.1, so the untrained network
    outputs about the bilinear upscale while every layer gets gradients from the first step (a zeroed
    one would stop them). Each iteration: a random run of ``clip`` consecutive frames, MSE loss, Adam.
    """
    from mmengine.config import Config

    from basicvsr_archival.archival.finetune import initial_state
    from basicvsr_archival.models.builder import build_restorer

    model_cfg = Config.fromfile(str(config)).model.to_dict()
    state, _ = initial_state(model_cfg, None, False, seed)
    for key in ("generator.conv_last.weight", "generator.conv_last.bias"):
        state[key].mul_(0.1)
    model = build_restorer(model_cfg, seed=seed)
    model.load_state_dict(state)
    gen = model.generator
    for name, param in gen.named_parameters():
        param.requires_grad_("spynet" not in name)
    optim = torch.optim.Adam([p for p in gen.parameters() if p.requires_grad], lr=lr)
    x = torch.from_numpy(np.stack(lq)).permute(0, 3, 1, 2).float().div_(255)
    y = torch.from_numpy(np.stack(gt)).permute(0, 3, 1, 2).float().div_(255)
    rng = np.random.default_rng(seed)
    clip = min(clip, len(lq))
    gen.train()
    t0 = time.perf_counter()
    for it in range(1, iters + 1):
        s = int(rng.integers(0, len(lq) - clip + 1))
        loss = torch.nn.functional.mse_loss(gen(x[None, s : s + clip]), y[None, s : s + clip])
        optim.zero_grad()
        loss.backward()
        optim.step()
        if log is not None and (it % 10 == 0 or it == iters):
            log(f"  iter {it}/{iters}: loss {loss.item():.5f} ({time.perf_counter() - t0:.0f} s)")
    for param in gen.parameters():
        param.requires_grad_(False)
    return model.eval()


def chunking_psnr(
    model: torch.nn.Module,
    lq: Sequence[np.ndarray],
    gt: Sequence[np.ndarray],
    settings: Sequence[tuple[int, int]],
) -> dict[str, float]:
    """PSNR vs GT of the whole-sequence restoration and of chunked ones (``(max_seq_len, overlap)``).

    Keys: ``whole``, and per setting ``L{seq}o{overlap}`` (vs GT) and ``L{seq}o{overlap}_vs_whole``.
    """
    from basicvsr_archival.apis import restore_video_frames

    def run(**kwargs: int) -> list[np.ndarray]:
        return list(restore_video_frames(model, lq, device="cpu", progress=False, **kwargs))

    whole = run()
    res = {"whole": mean_psnr(whole, gt)}
    for seq, overlap in settings:
        out = run(max_seq_len=seq, overlap=overlap)
        res[f"L{seq}o{overlap}"] = mean_psnr(out, gt)
        same = [np.array_equal(o, w) for o, w in zip(out, whole, strict=True)]
        res[f"L{seq}o{overlap}_vs_whole"] = np.inf if all(same) else _pooled_psnr(out, whole)
    return res


def _pooled_psnr(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """PSNR (dB) over all frames together (one MSE)."""
    mse = np.mean((np.stack(a).astype(np.float64) - np.stack(b).astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse)) if mse > 0 else float("inf")


def psnr_part(args: argparse.Namespace) -> float:
    """Train (or load) the tiny model on the real frames, print chunked vs whole; returns the worst gap."""
    from basicvsr_archival.utils.imresize import imresize

    if not Path(args.reds).is_dir():
        print(f"chunked vs whole: skipped, {args.reds} not found")
        return 0.0
    torch.set_num_threads(args.threads)
    lq, gt = reds_pairs(args.reds)
    seq = args.max_seq_len
    overlap = args.overlap if args.overlap is not None else default_overlap(seq)
    work = Path(args.work_dir)
    ckpt = work / f"tiny_reds_{Path(args.config).stem}_{args.train_iters}it_clip{args.clip}.pth"
    print(f"chunked vs whole: {len(gt)} real frames {gt[0].shape[1]}x{gt[0].shape[0]} (GT), x4 bicubic LR")
    t0 = time.perf_counter()
    if ckpt.is_file():
        from mmengine.config import Config

        from basicvsr_archival.models.builder import build_restorer

        model = build_restorer(Config.fromfile(str(args.config)).model.to_dict(), seed=0)
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
        model.eval()
        print(f"  trained model loaded from {ckpt}")
    else:
        name, iters = Path(args.config).name, args.train_iters
        print(f"  training {name} from scratch: {iters} iterations, clips of {args.clip} frames")
        model = train_tiny_model(args.config, lq, gt, args.train_iters, args.clip, log=print)
        work.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": model.state_dict()}, ckpt)
        print(f"  trained in {time.perf_counter() - t0:.0f} s, saved to {ckpt}")
    settings = [(seq, 0), (seq, overlap)] if overlap else [(seq, 0)]
    res = chunking_psnr(model, lq, gt, settings)
    bicubic = mean_psnr([imresize(x, SCALE) for x in lq], gt)
    print(f"  PSNR vs GT: bicubic {bicubic:.3f} dB, model whole sequence {res['whole']:.3f} dB")
    print(
        f"  {'max_seq_len':>11} {'overlap':>7} {'PSNR vs GT':>10} {'minus whole':>11} {'PSNR vs whole':>13}"
    )
    worst = 0.0
    for s, o in settings:
        key = f"L{s}o{o}"
        diff = res[key] - res["whole"]
        worst = max(worst, abs(diff)) if o == overlap else worst
        print(f"  {s:>11} {o:>7} {res[key]:>10.3f} {diff:>+11.4f} {res[key + '_vs_whole']:>13.2f}")
    print(f"  |chunked (overlap {overlap}) - whole| = {worst:.4f} dB (target <= 0.05)")
    return worst


def main(argv: list[str] | None = None) -> int:
    """Run the selected parts (or, as a child process, one demo run)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CHILD]:
        return child_main(int(argv[1]), argv[2:])
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if not args.skip_rss:
        rss_part(args)
    if not args.skip_psnr:
        psnr_part(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
