"""CUDA against the CPU: deformable convolutions, the network in float32 (TF32 off), fp16/bf16, restore.

Marked ``cuda`` and skipped without a CUDA device; ``benchmarks/gpu_check.sh`` runs them on a GPU
machine (``python -m pytest -m cuda tests/models/test_cuda.py``). The real data comes from
``../shared`` or, on the GPU machine, from the copy that ``gpu_check.sh --prepare`` ships.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from basicvsr_archival.apis import init_model
from basicvsr_archival.models.ops.modulated_deform_conv import external_impl_works, modulated_deform_conv2d

DEVICE = "cuda"
REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny_basicvsrpp_c8n1.py"
SHARED_CANDIDATES = (REPO.parent / "shared", REPO / "build" / "gpu_wheelhouse" / "shared")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def _no_tf32():
    """True float32 on the GPU (TF32 off) for the duration of a test."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _shared(rel: str) -> Path | None:
    """``rel`` under ../shared or the shipped copy; None where neither has it."""
    return next((root / rel for root in SHARED_CANDIDATES if (root / rel).exists()), None)


def _clip(frames: int, h: int, w: int) -> torch.Tensor:
    """(1, t, 3, h, w) real REDS frames (top-left crop) where present, else seeded smooth noise."""
    folder = _shared("data/reds_demo_000")
    if folder is not None and importlib.util.find_spec("cv2") is not None:
        import cv2

        files = sorted(folder.glob("*.png"))[:frames]
        imgs = [cv2.imread(str(f)) for f in files]
        if len(imgs) == frames and all(isinstance(i, np.ndarray) for i in imgs):
            arr = np.stack([i[:h, :w, ::-1] for i in imgs]).astype(np.float32) / 255.0
            return torch.from_numpy(arr).permute(0, 3, 1, 2).unsqueeze(0)
    noise = torch.rand(frames, 3, h // 4, w // 4, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(noise, size=(h, w), mode="bilinear").unsqueeze(0)


def _device_model(state: dict):
    """The tiny c8n1 on DEVICE with the plain-PyTorch backend (where init_model has one), ``state`` loaded."""
    kwargs = {"backend": "torch"} if "backend" in inspect.signature(init_model).parameters else {}
    model = init_model(TINY, None, DEVICE, **kwargs)
    model.load_state_dict(state)
    return model


def _run(model, lq: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """float32 CPU output of ``model`` on ``lq``, under autocast to ``dtype`` when given."""
    device = next(model.parameters()).device
    autocast = (
        torch.autocast(device.type, dtype=dtype) if dtype else torch.autocast(device.type, enabled=False)
    )
    with torch.inference_mode(), autocast:
        return model(lq.to(device), mode="tensor").float().cpu()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of ``a`` against ``b`` (clamped to [0, 1])."""
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.mark.parametrize("impl", ["auto", "pure", "torchvision", "mmcv"])
def test_dcn_on_cuda_matches_cpu_reference(impl):
    """Each implementation on the GPU equals the CPU pure path at BasicVSR++'s alignment shape."""
    if impl in ("torchvision", "mmcv") and not external_impl_works(impl, torch.device(DEVICE).type):
        pytest.skip(f"{impl}'s deformable convolution does not import here or fails its self-check")
    gen = torch.Generator().manual_seed(0)
    c_in, c_out, groups, h, w = 32, 16, 16, 20, 28  # in 2*mid, out mid, 16 deform groups, 3x3
    args = [
        torch.randn(1, c_in, h, w, generator=gen),
        torch.randn(1, groups * 18, h, w, generator=gen) * 4,  # flow-sized offsets, many outside the image
        torch.rand(1, groups * 9, h, w, generator=gen),
        torch.randn(c_out, c_in, 3, 3, generator=gen) * 0.1,
        torch.randn(c_out, generator=gen),
    ]
    shape = dict(stride=1, padding=1, dilation=1, groups=1, deform_groups=groups)
    with torch.inference_mode():
        ref = modulated_deform_conv2d(*args, **shape, impl="pure")
        got = modulated_deform_conv2d(*(t.to(DEVICE) for t in args), **shape, impl=impl)
    assert got.device.type == torch.device(DEVICE).type and got.shape == ref.shape == (1, c_out, h, w)
    assert ref.abs().max().item() > 1.0  # not a trivially small output
    assert (got.cpu() - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("impl", ["pure", "torchvision", "mmcv"])
def test_dcn_on_cuda_matches_mmcv_recording(impl):
    """The GPU implementations reproduce mmcv's recorded forward (shared/reference/dcn_official_io.pt)."""
    path = _shared("reference/dcn_official_io.pt")
    if path is None:
        pytest.skip("reference/dcn_official_io.pt not found (../shared or build/gpu_wheelhouse/shared)")
    if impl != "pure" and not external_impl_works(impl, torch.device(DEVICE).type):
        pytest.skip(f"{impl}'s deformable convolution does not import here or fails its self-check")
    rec = torch.load(path)
    inputs = [rec[k].to(DEVICE) for k in ("x", "offset", "mask", "weight", "bias")]
    with torch.inference_mode():
        out = modulated_deform_conv2d(*inputs, **rec["args"], impl=impl)
    assert out.shape == rec["output"].shape == (2, 16, 13, 17)
    assert (out.cpu() - rec["output"]).abs().max().item() <= 1e-4


def test_network_on_cuda_matches_cpu_fp32(lively_tiny_model):
    """c8n1 with live offsets: the GPU (TF32 off) within 1e-4 of the CPU on real frames."""
    cpu_model = lively_tiny_model()
    lq = _clip(5, 64, 96)
    ref = _run(cpu_model, lq)
    out = _run(_device_model(cpu_model.state_dict()), lq)
    assert out.shape == ref.shape == (1, 5, 3, 256, 384)
    assert ref.std().item() > 0.05  # a real picture, not a constant
    assert (out - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("precision,min_db", [("fp16", 50.0), ("bf16", 35.0)])
def test_half_precision_psnr_against_fp32(lively_tiny_model, precision, min_db):
    """fp16 / bf16 autocast on the GPU stay close to fp32 (measured on the CPU: 63 / 44 dB) but differ."""
    model = _device_model(lively_tiny_model().state_dict())
    lq = _clip(5, 64, 96)
    ref = _run(model, lq)
    out = _run(model, lq, torch.float16 if precision == "fp16" else torch.bfloat16)
    value = _psnr(out, ref)
    assert min_db < value < math.inf


def _video_io_missing() -> str | None:
    """Why archives cannot be built or restored here (no ffmpeg binary / PyAV), or None."""
    from basicvsr_archival.utils.ffmpeg import ffmpeg_exe

    try:
        exe = ffmpeg_exe()
        import av

        av.open  # noqa: B018  (the GPU check's stand-in raises here)
    except (ImportError, RuntimeError, OSError) as exc:
        return f"video I/O unavailable: {exc}"
    return None if os.path.isfile(exe) else f"ffmpeg binary not found: {exe}"


def test_restore_on_cuda_matches_cpu(tmp_path):
    """``tools/restore.py --device cuda`` restores an archive's 4 frames like the CPU (within 1 level)."""
    reason = _video_io_missing()
    frames_dir = _shared("data/reds_demo_000")
    if reason or frames_dir is None:
        pytest.skip(reason or "REDS demo frames not found")
    from basicvsr_archival.archival.finetune import initial_state
    from basicvsr_archival.archival.pipeline import load_archival_config, run_archive_job
    from basicvsr_archival.utils.cli import run_cli
    from basicvsr_archival.utils.ffmpeg import frames_to_video

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(sorted(frames_dir.glob("*.png"))[:4]):
        os.symlink(f.resolve(), frames / f"{i:08d}.png")
    src = frames_to_video(
        frames, tmp_path / "src.mkv", "25", codec="libx264", crf=0, preset="ultrafast",
        extra_args=["-vf", "crop=128:96:64:40"],
    )  # fmt: skip
    tiny_ci = REPO / "configs" / "archival" / "tiny_ci.py"
    state, _ = initial_state(load_archival_config(tiny_ci).model, None, False, seed=3)
    base = tmp_path / "tiny_base.pth"
    torch.save({"state_dict": state}, base)
    opts = {"base_checkpoint": str(base), "finetune.max_iters": 2, "restore.max_seq_len": 4}
    archive = tmp_path / "clip.archive"
    run_archive_job(tiny_ci, src, archive, tmp_path / "work", cfg_options=opts, progress=False)
    spec = importlib.util.spec_from_file_location("tool_restore", REPO / "tools" / "restore.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    outputs = []
    for i, device in enumerate(("cpu", DEVICE)):
        out = tmp_path / f"restored_{i}_{device}"
        argv = [str(archive), "-o", str(out), "--device", device, "--base-checkpoint", str(base)]
        argv.append("--no-progress")
        assert run_cli(tool.main, argv) == 0
        import cv2

        outputs.append(np.stack([cv2.imread(str(p)) for p in sorted(out.glob("*.png"))]).astype(int))
    cpu, gpu = outputs
    assert cpu.shape == gpu.shape == (4, 96, 128, 3)
    assert np.abs(cpu - gpu).max() <= 1
