"""Tests of the inference API (tiny c8n1 model on small generated frames, CPU)."""

from __future__ import annotations

import os
import re
import stat
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from basicvsr_archival.apis import (
    CheckpointError,
    CheckpointMismatchError,
    FrameSource,
    FrameSourceError,
    InferenceError,
    OutputExistsError,
    OutputPathError,
    init_model,
    read_frame_source,
    restoration_video_inference,
    restore_video_frames,
    window_indices,
)
from basicvsr_archival.apis.inference import _sliding_windows
from basicvsr_archival.utils.audio import audio_codecs
from basicvsr_archival.utils.ffmpeg import (
    VideoWriter,
    count_video_frames,
    iter_video_frames,
    probe_video,
    run_ffmpeg,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO_ROOT / "configs" / "tiny_basicvsrpp_c8n1.py"
H, W = 64, 64  # the smallest size BasicVSR++ runs without padding


def _umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_frames(n: int, h: int = H, w: int = W) -> list[np.ndarray]:
    """``n`` smooth RGB uint8 frames with a pattern that moves by one pixel per frame."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for t in range(n):
        r = 127 + 120 * np.sin((xx + t) / 7.0)
        g = 127 + 120 * np.cos((yy - t) / 9.0)
        b = 127 + 120 * np.sin((xx + yy + 2 * t) / 11.0)
        frames.append(np.stack([r, g, b], axis=-1).round().astype(np.uint8))
    return frames


def save_official_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Save ``model``'s generator in the official layout: ``{'meta', 'state_dict': {'generator.<key>'}}``."""
    state = {f"generator.{k}": v for k, v in model.generator.state_dict().items()}
    torch.save({"meta": {"mmedit_version": "0.16.1", "iter": 1}, "state_dict": state}, path)
    return path


class NearestUpscale4(torch.nn.Module):
    """A stand-in restorer for the writing tests: nearest-neighbour x4 of (n, t, 3, h, w), no compute."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, t, 3, h, w) -> (n, t, 3, 4h, 4w)."""
        return x.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1) + self.dummy


@pytest.fixture
def fake_model() -> torch.nn.Module:
    """The nearest-neighbour stand-in model."""
    return NearestUpscale4().eval()


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    """The tiny BasicVSR++ restorer with random weights, on the CPU."""
    torch.manual_seed(0)
    return init_model(TINY_CONFIG, device="cpu")


@pytest.fixture
def frame_dir(tmp_path: Path) -> Path:
    """A folder of 3 PNG frames (64x64) with non-numeric names."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(make_frames(3)):
        cv2.imwrite(str(folder / f"shot_{'abc'[i]}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


# ---------------------------------------------------------------------------------------- init_model
def test_init_model_loads_official_layout_checkpoint(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    ckpt = save_official_checkpoint(tiny_model, tmp_path / "tiny.pth")
    torch.manual_seed(123)  # a different random init, overwritten by the checkpoint
    model = init_model(str(TINY_CONFIG), ckpt, device="cpu")
    assert not model.training
    assert isinstance(model.cfg, Config)
    assert model.cfg.model.generator.mid_channels == 8
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_init_model_accepts_config_object() -> None:
    cfg = Config.fromfile(str(TINY_CONFIG))
    model = init_model(cfg, None, device="cpu")
    assert model.cfg is cfg
    assert model.generator.mid_channels == 8


def test_mismatching_checkpoint_raises_clear_error(tmp_path: Path) -> None:
    cfg = Config.fromfile(str(TINY_CONFIG))
    cfg.model.generator.mid_channels = 16
    ckpt = save_official_checkpoint(init_model(cfg, device="cpu"), tmp_path / "c16.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        init_model(TINY_CONFIG, ckpt, device="cpu")
    message = str(info.value)
    assert str(ckpt) in message
    assert "shape mismatches" in message and "generator.feat_extract" in message
    assert "\n" not in message


def test_bare_generator_state_dict_gets_a_hint(tiny_model: torch.nn.Module, tmp_path: Path) -> None:
    ckpt = tmp_path / "bare.pth"
    torch.save(tiny_model.generator.state_dict(), ckpt)
    pattern = r"missing keys .*unexpected keys .*'generator\.' key prefix"
    with pytest.raises(CheckpointMismatchError, match=pattern):
        init_model(TINY_CONFIG, ckpt, device="cpu")


def test_unreadable_or_missing_checkpoint(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pth: not a PyTorch checkpoint \(neither"):
        init_model(TINY_CONFIG, garbage, device="cpu")
    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError) as info:  # torch itself says weights_only=False "will likely succeed"
        init_model(TINY_CONFIG, noise, device="cpu")
    assert (
        str(info.value)
        == f"{noise}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)"
    )
    with pytest.raises(CheckpointError, match=r"nope\.pth: checkpoint file not found"):
        init_model(TINY_CONFIG, tmp_path / "nope.pth", device="cpu")


def test_bad_device_and_config(tmp_path: Path) -> None:
    with pytest.raises(InferenceError, match="unknown device 'tpu0'"):
        init_model(TINY_CONFIG, device="tpu0")
    with pytest.raises(InferenceError, match="config file not found"):
        init_model(tmp_path / "missing.py")


# ---------------------------------------------------------------------------------------- frame sources
def test_read_frame_source_folder(frame_dir: Path) -> None:
    (frame_dir / "notes.txt").write_text("ignored")
    source = read_frame_source(frame_dir)
    assert (source.kind, source.num_frames, source.fps) == ("frames", 3, Fraction(25))
    assert (source.width, source.height) == (W, H)
    assert source.names == ["shot_a.png", "shot_b.png", "shot_c.png"]
    assert source.output_name(1) == "shot_b.png"
    frames = list(source)
    assert len(frames) == 3 and frames[0].shape == (H, W, 3) and frames[0].dtype == np.uint8
    np.testing.assert_array_equal(frames[2], make_frames(3)[2])  # RGB order kept


def test_read_frame_source_video(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    with VideoWriter(video, fps=Fraction(30000, 1001), crf=10) as writer:
        for frame in make_frames(5):
            writer.write(frame)
    source = read_frame_source(video)
    assert (source.kind, source.num_frames, source.fps) == ("video", 5, Fraction(30000, 1001))
    frames = list(source)
    assert len(frames) == 5 and frames[0].shape == (H, W, 3)
    assert source.output_name(4) == "00000004.png"


def test_read_frame_source_errors(tmp_path: Path) -> None:
    with pytest.raises(FrameSourceError, match="no such file or folder"):
        read_frame_source(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FrameSourceError, match="empty: no image frames"):
        read_frame_source(empty)
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"\x00" * 100)
    with pytest.raises(FrameSourceError, match=r"bogus\.mp4"):
        read_frame_source(bogus)


# ---------------------------------------------------------------------------------------- restoration
def official_padded_indices(total: int, half: int) -> list[int]:
    """Frame indices of MMEditing's ``pad_sequence`` output (edge-skipping mirror, shifted by one)."""
    head = list(range(half + 1, 2 * half + 1))[::-1]
    tail = list(range(total - 1 - 2 * half, total - 1 - half))[::-1]
    return head + list(range(total)) + tail


@pytest.mark.parametrize("half", [1, 2, 3])
@pytest.mark.parametrize("total", [7, 10])
def test_window_indices_follow_official_padding(half: int, total: int) -> None:
    padded = official_padded_indices(total, half)
    for t in range(total):
        assert window_indices(t, half, total) == padded[t : t + 2 * half + 1]


def test_window_indices_examples_and_short_sequences() -> None:
    assert window_indices(0, 1, 5) == [2, 0, 1]
    assert window_indices(4, 1, 5) == [3, 4, 2]
    assert window_indices(0, 2, 1) == [0, 0, 0, 0, 0]  # too short for the mirror: clamped
    assert window_indices(1, 1, 2) == [0, 1, 0]
    assert window_indices(5, 1, None) == [4, 5, 6]


@pytest.mark.parametrize("total", [1, 2, 3, 6])
@pytest.mark.parametrize("window_size", [1, 3, 5])
def test_sliding_windows_stream_the_padded_windows(total: int, window_size: int) -> None:
    windows = list(_sliding_windows(iter(range(total)), window_size))
    half = window_size // 2
    assert windows == [window_indices(t, half, total) for t in range(total)]


def test_streaming_chunks_give_all_frames_at_4x(tiny_model: torch.nn.Module) -> None:
    frames = make_frames(3)
    pulled = []

    def source():
        for i, frame in enumerate(frames):
            pulled.append(i)
            yield frame

    outputs = restore_video_frames(tiny_model, source(), max_seq_len=2, progress=False)
    first = next(outputs)
    assert len(pulled) == 2  # only the first chunk was read
    rest = list(outputs)
    assert len(rest) + 1 == len(frames)
    for out in [first, *rest]:
        assert out.shape == (4 * H, 4 * W, 3) and out.dtype == np.uint8


def test_sliding_window_mode_shapes(tiny_model: torch.nn.Module) -> None:
    outputs = list(restore_video_frames(tiny_model, make_frames(2), window_size=3, progress=False))
    assert len(outputs) == 2
    assert all(out.shape == (4 * H, 4 * W, 3) and out.dtype == np.uint8 for out in outputs)


def test_bf16_on_cpu_runs(tiny_model: torch.nn.Module) -> None:
    outputs = list(restore_video_frames(tiny_model, make_frames(1), precision="bf16", progress=False))
    assert len(outputs) == 1 and outputs[0].shape == (4 * H, 4 * W, 3)


def test_restore_argument_errors(fake_model: torch.nn.Module) -> None:
    with pytest.raises(InferenceError, match="odd"):
        restore_video_frames(fake_model, make_frames(2), window_size=2)
    with pytest.raises(InferenceError, match="max_seq_len"):
        restore_video_frames(fake_model, make_frames(2), max_seq_len=0)
    with pytest.raises(InferenceError, match="fp16 needs a CUDA device"):
        restore_video_frames(fake_model, make_frames(2), precision="fp16", device="cpu")
    with pytest.raises(InferenceError, match="unknown precision"):
        restore_video_frames(fake_model, make_frames(2), precision="int8")


def test_inference_writes_png_folder_atomically(fake_model: torch.nn.Module, frame_dir: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = restoration_video_inference(fake_model, frame_dir, out, max_seq_len=2, progress=False)
    assert (result.num_frames, result.width, result.height) == (3, 4 * W, 4 * H)
    assert sorted(p.name for p in out.iterdir()) == ["shot_a.png", "shot_b.png", "shot_c.png"]
    assert cv2.imread(str(out / "shot_a.png")).shape == (4 * H, 4 * W, 3)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~_umask()  # not mkdtemp's 0o700
    # an existing output folder: same-named frames need overwrite=True; frames are moved in, others kept
    (out / "keep.txt").write_text("x")
    restoration_video_inference(fake_model, frame_dir, out, max_seq_len=3, progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "shot_a.png", "shot_b.png", "shot_c.png"]


def test_inference_refuses_to_overwrite_the_input(fake_model: torch.nn.Module, frame_dir: Path) -> None:
    before = sorted(p.name for p in frame_dir.iterdir())
    for out in (frame_dir, frame_dir / "sub", frame_dir / "x.mp4"):
        with pytest.raises(OutputPathError, match="refusing to overwrite the input"):
            restoration_video_inference(fake_model, frame_dir, out, progress=False)
    assert sorted(p.name for p in frame_dir.iterdir()) == before


def test_inference_writes_video_keeping_fps(fake_model: torch.nn.Module, tmp_path: Path) -> None:
    src = tmp_path / "in.mkv"
    with VideoWriter(src, fps=24, crf=10) as writer:
        for frame in make_frames(3):
            writer.write(frame)
    out = tmp_path / "out.mp4"
    result = restoration_video_inference(fake_model, src, out, progress=False)
    assert result.num_frames == 3
    info = probe_video(out)
    assert (info.num_frames, info.width, info.height, info.fps) == (3, 4 * W, 4 * H, Fraction(24))
    with pytest.raises(OutputPathError, match="refusing to overwrite the input"):
        restoration_video_inference(fake_model, src, src, progress=False)


def test_fake_model_outputs_match_nearest_upscale(fake_model: torch.nn.Module) -> None:
    frames = make_frames(4)
    for kwargs in (dict(max_seq_len=3), dict(window_size=3)):
        outputs = list(restore_video_frames(fake_model, iter(frames), progress=False, **kwargs))
        assert len(outputs) == 4
        for frame, out in zip(frames, outputs):
            np.testing.assert_array_equal(out, frame.repeat(4, axis=0).repeat(4, axis=1))


# ---------------------------------------------------------------------------------------- output paths
@pytest.fixture(scope="module")
def clip_with_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-frame 32x32 x264 clip at 10 fps with a 0.4 s AAC sine track."""
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    args = ["-f", "lavfi", "-i", "testsrc2=size=32x32:rate=10", "-f", "lavfi", "-i", "sine=frequency=440"]
    args += [
        "-frames:v",
        "4",
        "-t",
        "0.4",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        str(path),
    ]
    run_ffmpeg(args, "making the test clip")
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov", ".avi", ".MP4"])
def test_each_accepted_container_writes_a_decodable_video(
    fake_model: torch.nn.Module, clip_with_audio: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"out{suffix}"
    result = restoration_video_inference(fake_model, clip_with_audio, out, progress=False)
    assert (result.num_frames, result.width, result.height) == (4, 128, 128)
    assert count_video_frames(out, decode=True) == 4  # decodes frame by frame, not just probes
    frames = list(iter_video_frames(out))
    assert len(frames) == 4 and frames[0].shape == (128, 128, 3)
    assert len(audio_codecs(out)) == 1  # the input's audio is carried in every container
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


@pytest.mark.parametrize("name", ["out.xyz", "out.webm", "out.png"])
def test_unknown_output_extension_is_refused_before_any_work(
    fake_model: torch.nn.Module, frame_dir: Path, tmp_path: Path, name: str
) -> None:
    out = tmp_path / "res" / name
    with pytest.raises(OutputPathError, match=rf"{name}: unknown output extension '\.\w+'"):
        restoration_video_inference(fake_model, frame_dir, out, progress=False)
    assert not (tmp_path / "res").exists()  # no folder of PNGs, no temporary folder
    result = restoration_video_inference(fake_model, frame_dir, f"{out}/", progress=False)  # '/': a folder
    assert result.num_frames == 3 and len(list(out.glob("*.png"))) == 3


def test_existing_outputs_are_refused_unless_overwrite(
    fake_model: torch.nn.Module, frame_dir: Path, tmp_path: Path
) -> None:
    video = tmp_path / "out.mkv"
    video.write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match=r"out\.mkv: already exists \(pass --overwrite"):
        restoration_video_inference(fake_model, frame_dir, video, progress=False)
    assert video.read_bytes() == b"keep"
    restoration_video_inference(fake_model, frame_dir, video, progress=False, overwrite=True)
    assert probe_video(video).num_frames == 3
    folder = tmp_path / "frames_out"
    folder.mkdir()
    (folder / "shot_b.png").write_bytes(b"keep")
    with pytest.raises(OutputExistsError, match=r"frames_out/shot_b\.png: already exists"):
        restoration_video_inference(fake_model, frame_dir, folder, progress=False)
    assert [p.name for p in folder.iterdir()] == ["shot_b.png"] and (
        folder / "shot_b.png"
    ).read_bytes() == b"keep"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_output_under_a_file_is_refused_before_any_work(
    fake_model: torch.nn.Module, frame_dir: Path, tmp_path: Path
) -> None:
    a_file = tmp_path / "passwd"
    a_file.write_text("x")
    with pytest.raises(OutputPathError, match=r"passwd/out\.mp4: .*passwd is a file, not a folder"):
        restoration_video_inference(fake_model, frame_dir, a_file / "out.mp4", progress=False)


def test_png_frames_onto_a_full_disk_say_so(fake_model: torch.nn.Module, tiny_tmpfs: Path) -> None:
    frames = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(8)]
    source = FrameSource("noise", "generated", 8, Fraction(25), 32, 32, _open=lambda: iter(frames))
    out = tiny_tmpfs / "frames"  # 8 frames of 128x128 blocky noise, >12 KB each as PNG: 64 KiB of disk
    with pytest.raises(InferenceError) as info:
        restoration_video_inference(fake_model, source, out, progress=False)
    message = str(info.value)
    assert re.search(
        rf"\.png: cannot write PNG: disk full: \d+ bytes free on {re.escape(str(tiny_tmpfs))}$", message
    )
    assert "\n" not in message and list(tiny_tmpfs.iterdir()) == []  # the partial frames are removed
