"""Content descriptors (archival/descriptors.py): P.910 SI/TI, colour statistics, feat_extract embedding."""

import math

import numpy as np
import pytest
import torch

from basicvsr_archival.archival.descriptors import (
    DescriptorError,
    compute_descriptors,
    rgb_to_ycbcr,
    sample_indices,
    sobel_magnitude,
    spatial_information,
    temporal_information,
)
from basicvsr_archival.utils.audio import audio_streams
from basicvsr_archival.utils.ffmpeg import VideoWriter, count_video_frames, probe_video

W, H = 16, 8
# a vertical step edge 50 | 150: Sobel gives 4 * 100 = 400 on the 2 interior columns beside the edge
STEP_SI = 400 * math.sqrt((2 / (W - 2)) * (1 - 2 / (W - 2)))


def _grey(left: int, right: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) grey frame: ``left`` on the left half, ``right`` on the right half."""
    frame = np.full((H, W, 3), left, dtype=np.uint8)
    frame[:, W // 2 :] = right
    return frame


@pytest.fixture(scope="module")
def step_video(tmp_path_factory):
    """Lossless RGB video: flat 50, then twice the step edge 50 | 150 (TI 50 at the step, 0 after)."""
    path = tmp_path_factory.mktemp("descriptors") / "step.mkv"
    with VideoWriter(path, fps=10, lossless=True) as writer:
        writer.write_many([_grey(50, 50), _grey(50, 150), _grey(50, 150)])
    return path


def test_sobel_and_si_known_values():
    """Flat frame: SI 0; step edge: SI = 400 * sqrt(p (1 - p)) with p = 2 / 14 (139.971...)."""
    flat = np.full((H, W), 77.0)
    assert sobel_magnitude(flat).shape == (H - 2, W - 2)
    assert spatial_information([flat]) == 0.0
    step = _grey(50, 150)[..., 0].astype(float)
    mag = sobel_magnitude(step)
    assert sorted(set(mag.ravel().tolist())) == [0.0, 400.0]
    assert spatial_information([flat, step]) == pytest.approx(STEP_SI, abs=1e-9)
    assert round(STEP_SI, 4) == 139.9708
    # a horizontal edge gives the same value through the vertical kernel
    assert sobel_magnitude(step.T).std() == pytest.approx(400 * math.sqrt(2 / 14 * 12 / 14), abs=1e-9)


def test_ti_known_values():
    """TI: a uniform brightness change has TI 0; half the frame +100 has TI 50; one frame has TI 0."""
    a, b = np.full((H, W), 50.0), np.full((H, W), 120.0)
    half = _grey(50, 150)[..., 0].astype(float)
    assert temporal_information([(a, b)]) == 0.0
    assert temporal_information([(a, b), (a, half)]) == pytest.approx(50.0)
    assert temporal_information([]) == 0.0


def test_ycbcr_bt601_full_range():
    """Grey has Cb = Cr = 128 and Y = the grey level; pure red is (76.245, 84.9723, 255.5)."""
    grey = rgb_to_ycbcr(np.full((1, 1, 3), 200, dtype=np.uint8))[0, 0]
    assert grey == pytest.approx([200.0, 128.0, 128.0], abs=1e-9)
    red = rgb_to_ycbcr(np.array([[[255, 0, 0]]], dtype=np.uint8))[0, 0]
    assert red == pytest.approx([76.245, 84.97232, 255.5], abs=1e-5)


def test_sample_indices_spreads_pairs():
    """Short videos use every frame; long ones max_frames/2 consecutive pairs spread evenly."""
    assert sample_indices(5, 8) == [0, 1, 2, 3, 4]
    assert sample_indices(100, 8) == [0, 1, 33, 34, 65, 66, 98, 99]
    with pytest.raises(ValueError, match="max_frames"):
        sample_indices(10, 1)


def test_compute_descriptors_on_a_decoded_video(step_video):
    """Through a real (lossless) video: SI/TI and colour statistics take the known values."""
    d = compute_descriptors(step_video)  # every number rounded to 6 significant digits
    assert d["si"] == 139.971 == pytest.approx(STEP_SI, rel=5e-6)
    assert d["ti"] == 50.0
    # Y: 1/3 of the frames flat 50, 2/3 half 50 / half 150 -> mean 83.3333, std 100 * sqrt(2) / 3
    assert d["colour"] == pytest.approx([250 / 3, 100 * math.sqrt(2) / 3, 128, 0, 128, 0], abs=1e-3)
    assert d["embedding"] == []
    assert d["vector"] == [d["si"], d["ti"], *d["colour"]]
    assert d["groups"] == [["si", 1], ["ti", 1], ["colour", 6]]
    assert d["frames"] == [0, 1, 2]
    # sampling only the first pair (max_frames=2 -> pair 0, 1) keeps the step, so SI/TI are unchanged
    assert compute_descriptors(step_video, max_frames=2)["frames"] == [0, 1]


def test_embedding_is_feat_extract_pooled(step_video, tiny_feature_model):
    """The embedding equals feat_extract's per-channel spatial mean and std averaged over frames."""
    d = compute_descriptors(step_video, tiny_feature_model)
    frames = torch.from_numpy(np.stack([_grey(50, 50), _grey(50, 150), _grey(50, 150)])).permute(0, 3, 1, 2)
    with torch.no_grad():
        feats = tiny_feature_model.feat_extract(frames.float() / 255)
    expected = torch.cat([feats.mean(dim=(2, 3)), feats.std(dim=(2, 3), unbiased=False)], 1).mean(0)
    assert len(d["embedding"]) == 16
    assert d["embedding"] == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-6)
    assert d["groups"][-1] == ["embedding", 16]
    assert len(d["vector"]) == 24

    class Restorer(torch.nn.Module):
        def __init__(self, generator):
            super().__init__()
            self.generator = generator

    assert compute_descriptors(step_video, Restorer(tiny_feature_model))["embedding"] == d["embedding"]
    with pytest.raises(DescriptorError, match="Linear: model has no feat_extract"):
        compute_descriptors(step_video, torch.nn.Linear(2, 2))


def test_missing_video_is_one_line(tmp_path):
    """A missing LR stream raises DescriptorError naming the file."""
    with pytest.raises(DescriptorError, match=r"nope\.mp4: cannot read frames") as err:
        compute_descriptors(tmp_path / "nope.mp4")
    assert "\n" not in str(err.value)


def test_collection_segments_fixture(collection_segments):
    """15 segments of 5 sources: 14 frames, 128x72 (LR 64x36), audio kept where the source has it."""
    assert len(collection_segments) == 15
    assert len({s.source for s in collection_segments}) == 5
    for seg in collection_segments:
        info, lr = probe_video(seg.path), probe_video(seg.lr)
        assert (info.width, info.height, lr.width, lr.height) == (128, 72, 64, 36)
        assert count_video_frames(seg.path) == count_video_frames(seg.lr) == 14
        assert bool(audio_streams(seg.path)) == seg.has_audio
    assert sum(s.has_audio for s in collection_segments) == 9  # bigbuckbunny, box, Megamind


def test_real_segment_descriptors_are_deterministic(collection_segments, tiny_feature_model):
    """On a real LR stream: all 14 frames used, 24 numbers, equal with 1 and 2 torch threads."""
    seg = collection_segments[0]
    one = compute_descriptors(seg.lr, tiny_feature_model)
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = compute_descriptors(seg.lr, tiny_feature_model)
    finally:
        torch.set_num_threads(n)
    assert one == two
    assert one["frames"] == list(range(14))
    assert len(one["vector"]) == 24
    assert 50 < one["si"] < 200 and one["ti"] > 0
    assert compute_descriptors(seg.lr, max_frames=4)["frames"] == [0, 1, 12, 13]
