"""Fixtures shared by the archival tests."""

from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Every archival test module runs single-threaded (``one_torch_thread`` in tests/conftest.py)."""
    yield


# --- collection segments: short real clips of several sources, all one size (issue 14) ---------------
SEGMENT_SOURCES = ("bigbuckbunny.mp4", "box.mp4", "carphone_pristine.mp4", "Megamind.avi", "tree.avi")
SEGMENT_SIZE = (128, 72)  # every segment is centre-cropped to 16:9 and scaled to this (W, H)
SEGMENT_FRAMES = 14
SEGMENTS_PER_SOURCE = 3


@dataclass(frozen=True)
class CollectionSegment:
    """A cut segment: ``path`` 128x72 H.264 (+ AAC where the source has audio), ``lr`` its LR encode."""

    id: str
    source: str
    path: Path
    lr: Path
    start_frame: int
    num_frames: int
    has_audio: bool


def _cut_segment(src: Path, dst: Path, start_frame: int, fps: float, audio: bool) -> None:
    """Cut ``SEGMENT_FRAMES`` frames from ``start_frame`` of ``src`` into ``dst`` (crop 16:9, scale, AAC)."""
    from basicvsr_archival.utils.ffmpeg import run_ffmpeg

    w, h = SEGMENT_SIZE
    end = start_frame + SEGMENT_FRAMES
    vf = (
        f"trim=start_frame={start_frame}:end_frame={end},setpts=PTS-STARTPTS,"
        f"crop='min(iw,ih*16/9)':'min(ih,iw*9/16)',scale={w}:{h}:flags=area,setsar=1,format=yuv420p"
    )
    args = ["-y", "-i", str(src), "-map", "0:v:0", "-vf", vf]
    args += ["-c:v", "libx264", "-crf", "12", "-preset", "medium", "-fps_mode", "passthrough"]
    if audio:
        t0, dur = start_frame / fps, SEGMENT_FRAMES / fps
        args += ["-map", "0:a:0", "-af", f"atrim=start={t0:.6f}:duration={dur:.6f},asetpts=PTS-STARTPTS"]
        args += ["-c:a", "aac", "-b:a", "64k", "-ac", "2"]
    run_ffmpeg([*args, str(dst)], f"cutting a segment of {src}")


@pytest.fixture(scope="session")
def collection_segments(shared_dir: Path, repo_root: Path, tmp_path_factory) -> list[CollectionSegment]:
    """3 segments x 5 sources of ``../shared/data/videos`` (14 frames, 128x72, evenly spread over each
    source), with their LR streams encoded as the pipeline does (tiny_ci codec: x2, x264 CRF 23)."""
    from mmengine.config import Config

    from basicvsr_archival.archival.codec import CodecSettings, encode_lr
    from basicvsr_archival.utils.ffmpeg import probe_video

    codec = CodecSettings.from_dict(Config.fromfile(str(repo_root / "configs/archival/tiny_ci.py")).codec)
    out = tmp_path_factory.mktemp("collection_segments")
    segments = []
    for name in SEGMENT_SOURCES:
        src = shared_dir / "data" / "videos" / name
        info = probe_video(src)
        last = info.num_frames - SEGMENT_FRAMES
        for i in range(SEGMENTS_PER_SOURCE):
            start = round(last * (i + 0.5) / SEGMENTS_PER_SOURCE)
            seg_id = f"{src.stem.lower()}_s{i}"
            path, lr = out / f"{seg_id}.mp4", out / f"{seg_id}_lr.mp4"
            _cut_segment(src, path, start, float(info.fps), info.has_audio)
            encode_lr(path, lr, codec)
            segments.append(
                CollectionSegment(seg_id, src.stem, path, lr, start, SEGMENT_FRAMES, info.has_audio)
            )
    return segments


@pytest.fixture(scope="session")
def tiny_feature_model():
    """A tiny c8n1 x2 BasicVSR++ generator (no flow estimator) with seeded random weights, in eval mode."""
    import torch

    from basicvsr_archival.models.basicvsr_plusplus import BasicVSRPlusPlus

    torch.manual_seed(0)
    return BasicVSRPlusPlus(mid_channels=8, num_blocks=1, upscale_factor=2, flow_estimator="none").eval()


@pytest.fixture(scope="session")
def ray_in_process():
    """Ray started once per session in this process on 2 CPUs, as the 'ray' engine starts it."""
    ray = pytest.importorskip("ray")
    from basicvsr_archival.archival.engines import start_ray

    started = start_ray(None, num_cpus=2)
    yield ray
    if started:
        ray.shutdown()


CLIP_CUTS = (("bigbuckbunny.mp4", 60), ("tree.avi", 30))  # (source, first frame): 8 frames each
CLIP_FPS = 25


def _two_source_clip(videos: Path, out: Path) -> Path:
    """16 frames at 25 fps, 128x72 yuv420p (x264 CRF 12): 8 of each source of ``CLIP_CUTS``, cropped."""
    from basicvsr_archival.utils.ffmpeg import run_ffmpeg

    args, graph = ["-y"], []
    for i, (name, start) in enumerate(CLIP_CUTS):
        args += ["-i", str(videos / name)]
        graph.append(
            f"[{i}:v:0]trim=start_frame={start}:end_frame={start + 8},setpts=PTS-STARTPTS,"
            f"crop='min(iw,ih*16/9)':'min(ih,iw*9/16)',scale=128:72:flags=area,setsar=1,format=yuv420p[s{i}]"
        )
    graph.append(f"[s0][s1]concat=n=2:v=1:a=0,setpts=N/({CLIP_FPS}*TB)[v]")
    args += ["-filter_complex", ";".join(graph), "-map", "[v]", "-r", str(CLIP_FPS), "-frames:v", "16"]
    run_ffmpeg([*args, "-c:v", "libx264", "-crf", "12", "-threads", "1", str(out)], "cutting the test clip")
    return out


@pytest.fixture(scope="session")
def two_source_clip(shared_dir: Path, tmp_path_factory) -> Path:
    """The SR-aware test clip: 8 frames of Big Buck Bunny then 8 of tree, 128x72, 25 fps (x264 CRF 12)."""
    return _two_source_clip(shared_dir / "data" / "videos", tmp_path_factory.mktemp("clip") / "clip.mp4")
