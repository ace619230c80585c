"""Archives keep every audio stream and a variable frame rate's frame times; restore puts them back."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import av
import numpy as np
import pytest

from basicvsr_archival.archival import container, package
from basicvsr_archival.archival.pipeline import run_archive_job
from basicvsr_archival.archival.restore import restore_archive
from basicvsr_archival.utils.audio import audio_duration, audio_streams, extract_audio
from basicvsr_archival.utils.cli import run_cli
from basicvsr_archival.utils.ffmpeg import probe_video, run_ffmpeg
from basicvsr_archival.utils.frame_times import frame_times

REPO = Path(__file__).resolve().parents[2]
TINY_CI = str(REPO / "configs" / "archival" / "tiny_ci.py")
OPTS = {"finetune.max_iters": 1, "restore.max_seq_len": 4}


def _tool(name: str):
    """Import ``tools/<name>.py`` as a module (its ``main`` runs in-process)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _packets_digest(path: Path, index: int) -> tuple[str, int]:
    """SHA-256 and count of the payloads of audio stream ``index`` (equal iff the audio was copied)."""
    h, n = hashlib.sha256(), 0
    with av.open(str(path)) as container:
        for pkt in container.demux(container.streams.audio[index]):
            if pkt.size:
                h.update(bytes(pkt))
                n += 1
    return h.hexdigest(), n


def _video_start(path: Path) -> float:
    """Start (s) of the first video stream."""
    with av.open(str(path)) as container:
        s = container.streams.video[0]
        return float(s.start_time * s.time_base) if s.start_time is not None else 0.0


@pytest.fixture(scope="module")
def two_tracks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.8 s of testsrc2 (128x96, 10 fps, x264) + AAC stereo 48 kHz + AC3 mono 44.1 kHz starting at 0.2 s."""
    src = tmp_path_factory.mktemp("audio") / "two_tracks.mkv"
    args = ["-y", "-f", "lavfi", "-i", "testsrc2=size=128x96:rate=10", "-f", "lavfi"]
    args += ["-i", "sine=frequency=440:sample_rate=48000", "-itsoffset", "0.2", "-f", "lavfi"]
    args += ["-i", "sine=frequency=880:sample_rate=44100", "-map", "0:v", "-map", "1:a", "-map", "2:a"]
    args += ["-frames:v", "8", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    args += ["-c:a:0", "aac", "-ac:a:0", "2", "-c:a:1", "ac3", "-ac:a:1", "1", "-t", "0.8", str(src)]
    run_ffmpeg(args, "making the two-track clip")
    return src


@pytest.fixture(scope="module")
def two_tracks_archive(two_tracks: Path) -> Path:
    """The archive (directory) of ``two_tracks`` made by the archive job."""
    out = two_tracks.with_name("two_tracks.archive")
    run_archive_job(TINY_CI, two_tracks, out, cfg_options=OPTS, progress=False)
    return out


def test_archive_keeps_every_audio_stream_and_restore_puts_it_back(two_tracks, two_tracks_archive, tmp_path):
    manifest = container.verify_archive(two_tracks_archive).manifest
    streams = manifest["audio"]["streams"]
    assert manifest["audio"]["dropped"] is False and manifest["source"]["has_audio"] is True
    got = [(s["member"], s["codec"], s["channels"], s["sample_rate"], s["method"]) for s in streams]
    assert got == [("audio0.mka", "aac", 2, 48000, "copy"), ("audio1.mka", "ac3", 1, 44100, "copy")]
    assert [manifest["members"][s["member"]]["role"] for s in streams] == ["audio", "audio"]
    assert streams[0]["start_offset"] == pytest.approx(0.0, abs=0.01)
    assert streams[1]["start_offset"] == pytest.approx(0.2, abs=0.01)
    assert manifest["source"]["vfr"] is False and "timestamps" not in manifest["source"]
    frame = 1 / 10
    for suffix in (".mkv", ".mp4"):
        out = restore_archive(two_tracks_archive, tmp_path / f"r{suffix}", progress=False)
        assert out.notes == [] and probe_video(out.output).num_frames == 8
        restored, source = audio_streams(out.output), audio_streams(two_tracks)
        assert len(restored) == len(source) == 2
        for i, (r, s) in enumerate(zip(restored, source, strict=True)):
            assert (r.codec, r.channels, r.sample_rate) == (s.codec, s.channels, s.sample_rate)
            assert abs(audio_duration(out.output, i) - audio_duration(two_tracks, i)) < frame
            assert abs(r.start_offset - s.start_offset) < frame
            assert _packets_digest(out.output, i) == _packets_digest(two_tracks, i)  # bit-exact copy
    assert (tmp_path / "r.mkv").read_bytes() == restore_archive(  # still reproducible byte for byte
        two_tracks_archive, tmp_path / "again.mkv", progress=False
    ).output.read_bytes()


def test_audio_members_are_hash_checked_and_skipped_for_png_output(two_tracks_archive, tmp_path):
    frames = restore_archive(two_tracks_archive, tmp_path / "frames", progress=False)
    assert sorted(p.name for p in frames.output.iterdir()) == [f"{i:08d}.png" for i in range(8)]
    assert frames.notes == ["2 audio stream(s) skipped: a PNG folder holds no audio (restore to .mkv)"]
    bad = tmp_path / "bad.archive"
    bad.mkdir()
    for f in two_tracks_archive.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    data = bytearray((bad / "audio1.mka").read_bytes())
    data[len(data) // 2] ^= 0x10
    (bad / "audio1.mka").write_bytes(bytes(data))
    with pytest.raises(package.ArchiveCorruptError, match=r"member audio1\.mka is corrupted"):
        container.verify_archive(bad)
    (bad / "audio1.mka").unlink()
    with pytest.raises(package.ArchiveCorruptError, match=r"member audio1\.mka is missing"):
        restore_archive(bad, tmp_path / "x.mkv", progress=False)
    assert not (tmp_path / "x.mkv").exists()


def test_drop_audio_is_recorded_and_part_of_the_settings(two_tracks, two_tracks_archive, tmp_path, capsys):
    out = tmp_path / "silent.archive"
    argv = [TINY_CI, str(two_tracks), "-o", str(out), "--drop-audio", "--no-progress"]
    argv += ["--cfg-options", "finetune.max_iters=1"]
    assert run_cli(_tool("archive").main, argv) == 0
    assert "audio:   dropped (--drop-audio)" in capsys.readouterr().out
    manifest = container.verify_archive(out).manifest
    assert manifest["audio"] == {"dropped": True, "streams": []} and manifest["source"]["has_audio"] is True
    assert manifest["settings"]["drop_audio"] is True
    assert sorted(manifest["members"]) == ["lr.mp4", "model.pt.xz"]
    restored = restore_archive(out, tmp_path / "silent.mkv", progress=False).output
    assert audio_streams(restored) == [] and probe_video(restored).num_frames == 8
    work = two_tracks_archive.with_name("two_tracks.archive.work")
    with pytest.raises(package.ArchiveError, match="different settings"):
        run_archive_job(TINY_CI, two_tracks, tmp_path / "o", work, True, OPTS, False, drop_audio=True)


def test_real_ac3_track_restored(shared_dir, tmp_path):
    src = tmp_path / "megamind.mkv"  # 0.5 s of a real AVI with AC3 stereo, downscaled to 128x96
    args = ["-y", "-i", str(shared_dir / "data" / "videos" / "Megamind.avi"), "-t", "0.5"]
    args += ["-vf", "scale=128:96", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", str(src)]
    run_ffmpeg(args, "cutting Megamind.avi")
    job = run_archive_job(TINY_CI, src, tmp_path / "m.tar", cfg_options=OPTS, progress=False)
    assert [s["codec"] for s in job.manifest["audio"]["streams"]] == ["ac3"]
    fps = float(probe_video(src).fps)
    for suffix in (".mp4", ".mkv"):
        out = restore_archive(tmp_path / "m.tar", tmp_path / f"m{suffix}", progress=False).output
        (r,), (s,) = audio_streams(out), audio_streams(src)
        assert (r.codec, r.channels, r.sample_rate) == (s.codec, s.channels, s.sample_rate)
        assert (r.codec, r.channels, r.sample_rate) == ("ac3", 2, 48000)
        assert abs(audio_duration(out) - audio_duration(src)) < 1 / fps
        assert abs(r.start_offset - s.start_offset) < 1 / fps  # the video starts 42 ms after the audio
    # .mp4 drops the source's first, truncated AC3 frame (729 of 768 bytes); .mkv keeps every packet
    assert _packets_digest(out, 0) == _packets_digest(src, 0)


def test_codec_matroska_refuses_is_stored_losslessly(tmp_path):
    src = tmp_path / "f32be.mov"  # big-endian float PCM: Matroska has no tag for it
    args = ["-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-f", "lavfi"]
    args += ["-i", "sine=frequency=440:sample_rate=48000", "-map", "0:v", "-map", "1:a", "-t", "0.5"]
    run_ffmpeg([*args, "-c:v", "libx264", "-c:a", "pcm_f32be", str(src)], "making the f32be clip")
    (rec,) = extract_audio(src, tmp_path / "work")
    assert (rec["codec"], rec["method"], rec["stored_codec"]) == ("pcm_f32be", "lossless", "pcm_f32le")
    decoded = []
    for path in (src, tmp_path / "work" / rec["member"]):
        with av.open(str(path)) as container:
            decoded.append(np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)]))
    assert decoded[0].dtype == np.float32 and decoded[0].size == 24000
    assert np.array_equal(decoded[0], decoded[1])  # the same samples, bit for bit


# ---------------------------------------------------------------------------------------- VFR
@pytest.fixture(scope="module")
def tree_clip(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 10 frames of the VFR tree.avi (irregular frame times kept), 128x96 x264."""
    src = tmp_path_factory.mktemp("vfr") / "tree.mkv"
    args = ["-y", "-i", str(shared_dir / "data" / "videos" / "tree.avi"), "-frames:v", "10"]
    args += ["-vf", "scale=128:96,format=yuv420p", "-c:v", "libx264", "-preset", "ultrafast"]
    run_ffmpeg([*args, "-fps_mode", "passthrough", str(src)], "cutting tree.avi")
    return src


def test_whole_tree_avi_is_probed_as_vfr_with_its_real_frame_count(shared_dir):
    path = shared_dir / "data" / "videos" / "tree.avi"
    info, times = probe_video(path), frame_times(path)
    assert info.num_frames == len(times.pts) == 68  # not the 444 slots of the AVI header
    assert times.is_vfr(info.fps) and times.seconds()[-1] == pytest.approx(29.53, abs=0.01)


def test_vfr_frame_times_survive_archive_and_restore(tree_clip, tmp_path, capsys):
    src_times = frame_times(tree_clip).seconds()
    assert src_times[-1] == pytest.approx(4.067, abs=0.002)  # 10 frames at a nominal 15 fps: VFR
    out = tmp_path / "tree.archive"
    argv = [TINY_CI, str(tree_clip), "-o", str(out), "--no-progress", "--cfg-options", "finetune.max_iters=1"]
    assert run_cli(_tool("archive").main, argv) == 0
    printed = capsys.readouterr().out
    assert "note:    variable frame rate (10 frames over 4.1 s, nominal 15 fps): frame times kept" in printed
    source = container.verify_archive(out).manifest["source"]
    assert source["vfr"] is True and len(source["timestamps"]["pts"]) == 10
    half_frame = 0.5 / 15
    for suffix in (".mkv", ".mp4"):
        restored = restore_archive(out, tmp_path / f"tree{suffix}", progress=False).output
        got = frame_times(restored).seconds()
        assert len(got) == 10 and max(abs(a - b) for a, b in zip(got, src_times, strict=True)) < half_frame
    frames = restore_archive(out, tmp_path / "frames", progress=False)
    assert len(list(frames.output.iterdir())) == 10
    assert frames.notes == ["variable frame rate: PNG frames carry no frame times (restore to .mkv or .mp4)"]


def test_demo_warns_in_one_line_about_a_vfr_input(tree_clip, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("demo_vfr", REPO / "demo" / "restoration_video_demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    out = tmp_path / "demo.mp4"
    argv = [str(REPO / "configs" / "tiny_basicvsrpp_c8n1.py"), "none", str(tree_clip), str(out)]
    assert demo.main([*argv, "--device", "cpu", "--max-seq-len", "5", "--no-progress"]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "variable frame rate" in ln]
    assert lines == [
        f"warning: {tree_clip}: variable frame rate (10 frames over 4.1 s, nominal 15 fps); "
        "the output's frames are evenly spaced at that rate"
    ]
    assert probe_video(out).num_frames == 10
