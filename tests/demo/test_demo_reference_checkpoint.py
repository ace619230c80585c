"""The issue's end-to-end demo check: all 21 real REDS frames, a checkpoint in the official layout.

The checkpoint is the official implementation's reference state dict (``../shared/reference``,
BasicVSR++ c16n2, x4) saved as ``{'meta', 'state_dict': {'generator.<key>': ...}}``, exactly the
layout of MMEditing's published files.  The demo must write 21 PNG frames of 1280x720 whose pixels
are the network's output, and 21 frames to an ``.mp4``.  (~20-30 s on 2 CPU cores: the x4
reconstruction convolutions at 720p dominate, whatever the model width.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from basicvsr_archival.models import BasicVSRPlusPlus
from basicvsr_archival.utils.ffmpeg import probe_video

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / "demo" / "restoration_video_demo.py"


@pytest.fixture(scope="module")
def official_checkpoint(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(config, checkpoint, reference case) for the reference x4 weights in the official layout."""
    case = torch.load(shared_dir / "reference" / "basicvsrpp_official_io.pt")["x4"]
    folder = tmp_path_factory.mktemp("official")
    ckpt = folder / "basicvsr_plusplus_c16n2_official_layout.pth"
    state = {f"generator.{k}": v for k, v in case["state_dict"].items()}
    torch.save({"meta": {"mmedit_version": "0.16.1"}, "state_dict": state}, ckpt)
    gen = dict(type="BasicVSRPlusPlus", spynet_pretrained=None, **case["config"])
    config = folder / "basicvsr_plusplus_c16n2.py"
    config.write_text(
        "default_scope = 'basicvsr_archival'\n"
        f"model = dict(type='BasicVSR', generator={gen!r}, "
        "pixel_loss=dict(type='CharbonnierLoss', loss_weight=1.0, reduction='mean'))\n"
    )
    return config, ckpt, case


def run_demo(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """Run the demo as a user would (fresh interpreter, repo on the path)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, str(DEMO), *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)


def test_demo_on_21_real_frames_with_official_layout_checkpoint(official_checkpoint, reds_demo_dir, tmp_path):
    config, ckpt, case = official_checkpoint
    names = sorted(p.name for p in reds_demo_dir.glob("*.png"))
    assert len(names) == 21

    out_dir = tmp_path / "demo_000"
    proc = run_demo(config, ckpt, reds_demo_dir, out_dir, "--max-seq-len", 21, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in out_dir.glob("*.png"))
    assert written == names
    first = cv2.imread(str(out_dir / names[0]), cv2.IMREAD_COLOR)
    assert first.shape == (720, 1280, 3)

    # the PNGs hold the network's output (uint8-rounded): recompute frames 0..2 directly
    lqs = np.stack([cv2.imread(str(reds_demo_dir / n))[:, :, ::-1] for n in names]).astype(np.float32) / 255
    model = BasicVSRPlusPlus(**case["config"]).eval()
    model.load_state_dict(case["state_dict"], strict=True)
    with torch.no_grad():
        ref = model(torch.from_numpy(lqs).permute(0, 3, 1, 2).unsqueeze(0))[0, :3]  # (3, 3, 720, 1280)
    ref = (ref.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()[..., ::-1]  # (3, 720, 1280, BGR)
    for i in range(3):
        got = cv2.imread(str(out_dir / names[i]), cv2.IMREAD_COLOR)
        # the whole-sequence reference sees all 21 frames like the demo; allow 1 level of rounding
        assert np.abs(got.astype(int) - ref[i].astype(int)).max() <= 1

    mp4 = tmp_path / "demo_000.mp4"
    proc = run_demo(config, ckpt, reds_demo_dir, mp4, "--max-seq-len", 21, "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = probe_video(mp4)
    assert (info.num_frames, info.width, info.height) == (21, 1280, 720)
