"""Streaming restoration: overlapped chunks (scheme, laziness, API and demo arguments), audio pass-through."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from basicvsr_archival.apis import (
    InferenceError,
    restoration_video_inference,
    restore_video_frames,
)
from basicvsr_archival.apis.streaming import (
    DEFAULT_OVERLAP,
    chunk_plan,
    default_overlap,
    overlapped_chunks,
    resolve_overlap,
)
from basicvsr_archival.evaluation.metrics import psnr
from basicvsr_archival.utils.audio import audio_codecs, mux_audio
from basicvsr_archival.utils.ffmpeg import MediaError, probe_video, run_ffmpeg

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO_ROOT / "configs" / "tiny_basicvsrpp_c8n1.py"


class NearestUpscale4(torch.nn.Module):
    """Stand-in restorer without compute: nearest-neighbour x4 of (n, t, 3, h, w)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, t, 3, h, w) -> (n, t, 3, 4h, 4w)."""
        return x.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1) + self.dummy


def numbered_frames(n: int, h: int = 16, w: int = 16) -> list[np.ndarray]:
    """``n`` distinct RGB uint8 frames: frame i is filled with (i, 255 - i, 7 * i mod 256)."""
    return [np.full((h, w, 3), (i % 256, 255 - i % 256, 7 * i % 256), np.uint8) for i in range(n)]


# ---------------------------------------------------------------------------------------- scheme
@pytest.mark.parametrize("total", [0, 1, 5, 8, 9, 19, 20, 21, 22, 37, 100])
@pytest.mark.parametrize(("seq", "overlap"), [(1, 0), (2, 0), (3, 1), (8, 0), (8, 3), (20, 3), (20, 9)])
def test_cores_tile_the_video_once_with_context_on_both_sides(total: int, seq: int, overlap: int) -> None:
    plan = chunk_plan(total, seq, overlap)
    assert [i for _, a, b, _ in plan for i in range(a, b)] == list(range(total))  # once each, in order
    for k, (start, core_start, core_stop, stop) in enumerate(plan):
        last = k == len(plan) - 1
        assert stop - start <= seq and core_stop > core_start
        assert start == max(0, core_start - overlap)  # `overlap` frames of past context (none at frame 0)
        assert stop == (total if last else core_stop + overlap)  # and of future context (none at the end)
        if not last:
            assert stop - start == seq  # every call but the last uses the whole max_seq_len
    if 0 < total <= seq:
        assert plan == [(0, 0, total, total)]  # a short video is one chunk: the whole-sequence result


def test_default_overlap_and_argument_errors() -> None:
    assert DEFAULT_OVERLAP == 3
    assert [default_overlap(n) for n in (None, 1, 3, 4, 8, 11, 12, 20, 300)] == [0, 0, 0, 1, 2, 2, 3, 3, 3]
    assert resolve_overlap(20, None) == 3 and resolve_overlap(20, 0) == 0 and resolve_overlap(9, 4) == 4
    assert resolve_overlap(None, None, window_size=3) == 0
    model, frames = NearestUpscale4(), numbered_frames(3)
    for kwargs, match in [
        (dict(max_seq_len=8, overlap=4), r"2 \* overlap < max_seq_len \(overlap <= 3\)"),
        (dict(max_seq_len=8, overlap=-1), "integer >= 0"),
        (dict(overlap=2), "needs max_seq_len"),
        (dict(window_size=3, overlap=1), "recurrent mode"),
    ]:
        with pytest.raises(InferenceError, match=match):
            restore_video_frames(model, frames, progress=False, **kwargs)


def test_chunks_are_read_lazily_holding_one_chunk() -> None:
    frames = numbered_frames(30)
    pulled: list[int] = []

    def source():
        for i, frame in enumerate(frames):
            pulled.append(i)
            yield frame

    chunks = overlapped_chunks(source(), 8, 2)
    first = next(chunks)
    assert len(pulled) == 9  # the window of 8 plus one frame of look-ahead, not the video
    for chunk in itertools.chain([first], chunks):  # checked as each chunk is made
        assert all(a is b for a, b in zip(chunk.frames, frames[chunk.start : chunk.stop], strict=True))
        assert len(pulled) - chunk.start <= 8 + 1  # never more than one chunk (+1) read ahead
    assert len(pulled) == 30


def test_overlap_yields_every_frame_once_in_order() -> None:
    frames = numbered_frames(13)
    for seq, overlap in [(5, 2), (4, 1), (13, 6), (20, 3)]:
        outputs = list(
            restore_video_frames(NearestUpscale4(), iter(frames), seq, overlap=overlap, progress=False)
        )
        assert len(outputs) == 13
        for frame, out in zip(frames, outputs, strict=True):
            np.testing.assert_array_equal(out, frame.repeat(4, axis=0).repeat(4, axis=1))


class BidirectionalSmoothing(torch.nn.Module):
    """A recurrent stand-in with a known memory: the mean of a forward and a backward running average.

    Output t = x4 nearest upscale of ``(f_t + b_t) / 2`` with ``f_t = d * f_(t-1) + (1 - d) * x_t``
    (``f_0 = x_0``) and ``b_t`` the same run backwards; a frame k frames away weighs ``~d ** k``, so
    context cut off at a chunk border changes the output by ``~d ** (frames of context + 1)``.
    """

    def __init__(self, decay: float = 0.5) -> None:
        super().__init__()
        self.decay = decay
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, t, 3, h, w) -> (n, t, 3, 4h, 4w)."""
        d, t = self.decay, x.shape[1]
        fwd, bwd = [x[:, 0]], [x[:, -1]]
        for i in range(1, t):
            fwd.append(d * fwd[-1] + (1 - d) * x[:, i])
            bwd.append(d * bwd[-1] + (1 - d) * x[:, t - 1 - i])
        y = (torch.stack(fwd, 1) + torch.stack(bwd[::-1], 1)) / 2 + self.dummy
        return y.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1)


def test_overlap_makes_chunked_output_converge_to_the_whole_sequence() -> None:
    model = BidirectionalSmoothing()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(40)]
    whole = list(restore_video_frames(model, frames, progress=False))
    one_chunk = restore_video_frames(model, frames, max_seq_len=40, overlap=3, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(one_chunk, whole, strict=True))

    def psnr_vs_whole(overlap: int) -> float:
        out = restore_video_frames(model, frames, max_seq_len=10, overlap=overlap, progress=False)
        return psnr(np.stack(list(out)), np.stack(whole))  # over all 40 frames

    scores = [psnr_vs_whole(overlap) for overlap in range(5)]
    print("PSNR (dB) of 10-frame chunks vs the whole sequence, overlap 0..4:", [round(v, 2) for v in scores])
    assert scores[0] < 30.0  # the borders show without context (28.4 dB)
    assert all(b > a + 2.5 for a, b in itertools.pairwise(scores))  # each frame of context helps (+3-5 dB)
    assert scores[3] > scores[0] + 12.0  # 3 frames of context: 42.1 dB


@pytest.mark.parametrize(("total", "seq", "overlap"), [(7, 4, 1), (13, 6, 2), (30, 10, 3)])
def test_each_kept_frame_is_the_output_of_its_window(total: int, seq: int, overlap: int) -> None:
    model = BidirectionalSmoothing()
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(total)]
    outputs = list(restore_video_frames(model, iter(frames), seq, overlap=overlap, progress=False))
    plan = chunk_plan(total, seq, overlap)
    if total == 7:
        assert plan == [(0, 0, 3, 4), (2, 3, 5, 6), (4, 5, 7, 7)]
    for start, core_start, core_stop, stop in plan:
        alone = list(restore_video_frames(model, frames[start:stop], progress=False))
        for t in range(core_start, core_stop):
            np.testing.assert_array_equal(outputs[t], alone[t - start])


# ---------------------------------------------------------------------------------------- audio
def make_clip(path: Path, audio_codec: str | None, frames: int = 10, fps: int = 10) -> Path:
    """A ``frames / fps`` s testsrc2 clip (64x64, x264) with a 440 Hz sine track in ``audio_codec``."""
    args = ["-y", "-f", "lavfi", "-i", f"testsrc2=size=64x64:rate={fps}"]
    if audio_codec:
        args += [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=16000",
            "-map",
            "1:a",
            "-c:a",
            audio_codec,
        ]
    args += ["-map", "0:v", "-frames:v", str(frames), "-t", str(frames / fps)]
    run_ffmpeg([*args, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], f"making {path.name}")
    return path


def audio_duration(path: Path) -> float:
    """Duration (s) of the first audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        if stream.duration is not None:
            return float(stream.duration * stream.time_base)
        return max(
            float((p.pts + p.duration) * p.time_base) for p in container.demux(stream) if p.pts is not None
        )


@pytest.mark.parametrize(
    ("in_name", "codec", "out_name", "want"),
    [
        ("in.mp4", "aac", "out.mp4", "aac"),
        ("in.mkv", "pcm_u8", "out.mp4", "aac"),
        ("in.mkv", "pcm_s16le", "o.mkv", "pcm_s16le"),
    ],
)
def test_video_output_carries_the_input_audio(
    tmp_path: Path, in_name: str, codec: str, out_name: str, want: str
):
    src = make_clip(tmp_path / in_name, codec)
    out = tmp_path / "res" / out_name
    result = restoration_video_inference(
        NearestUpscale4(), src, out, max_seq_len=4, overlap=1, progress=False
    )
    assert result.num_frames == 10
    info = probe_video(out)
    assert (info.num_frames, info.width, info.height, info.has_audio) == (10, 256, 256, True)
    assert audio_codecs(out) == [want]  # stream copy where the container takes the codec, else AAC
    assert abs(audio_duration(out) - audio_duration(src)) < 0.1 and abs(audio_duration(out) - 1.0) < 0.1
    assert sorted(p.name for p in out.parent.iterdir()) == [out_name]  # no temporary file left


def test_no_audio_in_video_only_input_frames_output_or_when_disabled(tmp_path: Path) -> None:
    model = NearestUpscale4()
    silent = make_clip(tmp_path / "silent.mp4", None, frames=4)
    out = restoration_video_inference(model, silent, tmp_path / "a.mp4", progress=False).output_path
    assert not probe_video(out).has_audio and probe_video(out).num_frames == 4
    src = make_clip(tmp_path / "loud.mp4", "aac", frames=4)
    out = restoration_video_inference(model, src, tmp_path / "b.mkv", audio=False, progress=False).output_path
    assert not probe_video(out).has_audio
    frames = restoration_video_inference(model, src, tmp_path / "frames", progress=False).output_path
    assert sorted(p.name for p in frames.iterdir()) == [f"{i:08d}.png" for i in range(4)]
    with pytest.raises(MediaError, match="no audio stream"):
        mux_audio(out, silent, tmp_path / "c.mp4")


# ---------------------------------------------------------------------------------------- demo
def _demo():
    """The demo's module (``demo/restoration_video_demo.py`` runs its ``main``)."""
    import basicvsr_archival.tools.demo

    return basicvsr_archival.tools.demo


def test_demo_overlap_and_audio_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    demo = _demo()
    base = [str(TINY_CONFIG), "none", "in.mp4", "out.mp4"]
    for extra, message in [
        (["--overlap", "2"], "needs --max-seq-len"),
        (["--max-seq-len", "4", "--overlap", "2"], "need 2 * overlap < max_seq_len"),
        (["--window-size", "3", "--max-seq-len", "9", "--overlap", "1"], "recurrent mode"),
        (["--overlap", "-1"], "must be >= 0"),
    ]:
        with pytest.raises(SystemExit) as info:
            demo.parse_args([*base, *extra])
        assert info.value.code == 2 and message in capsys.readouterr().err
    args = demo.parse_args([*base, "--max-seq-len", "8", "--overlap", "3", "--no-audio"])
    assert (args.max_seq_len, args.overlap, args.no_audio) == (8, 3, True)
    assert demo.parse_args(base).overlap is None and not demo.parse_args(base).no_audio
    src = make_clip(tmp_path / "clip.mp4", "aac", frames=6)
    out = tmp_path / "clip_x4.mp4"
    argv = [
        str(TINY_CONFIG),
        "none",
        str(src),
        str(out),
        "--max-seq-len",
        "4",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert demo.main(argv) == 0
    err = capsys.readouterr().err
    assert "chunks of 4, overlap 1" in err  # the default overlap for 4-frame chunks
    info = probe_video(out)
    assert (info.num_frames, info.width, info.has_audio) == (6, 256, True)
    assert abs(audio_duration(out) - 0.6) < 0.1


# ---------------------------------------------------------------------------------------- real frames
def _bench():
    """Import ``benchmarks/bench_streaming.py`` (its training and PSNR helpers) as a module."""
    path = REPO_ROOT / "benchmarks" / "bench_streaming.py"
    spec = importlib.util.spec_from_file_location("bench_streaming", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """The tiny model on 2 shared cores runs fastest, and steadiest, single-threaded."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_chunks_match_whole_sequence_on_real_frames_with_a_trained_tiny_model(
    reds_demo_dir: Path, one_thread
):
    """A small version of ``bench_streaming.py``'s check: 12 frames, chunks of 8 overlapping by 2."""
    bench = _bench()
    lq, gt = bench.reds_pairs(reds_demo_dir, count=12)  # GT 320x180, LR 80x45
    # 40 iterations at lr 2e-3: +0.67 dB over bilinear here (20 at 4e-3 stayed 0.03 dB below it)
    model = bench.train_tiny_model(TINY_CONFIG, lq, gt, iters=40, clip=2, lr=2e-3)  # ~40 s
    res = bench.chunking_psnr(model, lq, gt, [(8, 2)])  # chunks [0, 8) -> 0..5, [4, 12) -> 6..11
    bilinear = bench.mean_psnr([cv2.resize(x, (320, 180), interpolation=cv2.INTER_LINEAR) for x in lq], gt)
    print({k: round(v, 4) for k, v in res.items()}, f"bilinear {bilinear:.3f}")
    assert res["whole"] > bilinear + 0.1  # trained: better than its starting point, the bilinear upscale
    assert abs(res["L8o2"] - res["whole"]) <= 0.05  # chunk borders cost no quality
    assert res["L8o2_vs_whole"] > 40.0
