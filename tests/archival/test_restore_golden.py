"""Golden restore: a fixed archive restores to the same bytes as before a refactor (issue 13).

``tests/data/golden_restore/tiny_ci_x2.tar`` was written by ``tools/archive.py``'s pipeline with
``configs/archival/tiny_ci.py`` (no base checkpoint, ``finetune.max_iters=2``,
``restore.max_seq_len=4``) from the first 6 REDS demo frames cropped to 128x96 at 24000/1001 fps;
``restored.mkv`` is its restore made then, on the CPU with the backend the manifest records. A
restore elsewhere may differ in the last bit where the torch version, CPU instruction set or C
kernels differ from the manifest's record (module docstring of ``archival/restore.py``): skipped there.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from basicvsr_archival.archival.restore import decoded_frames, restore_archive, warn_if_backend_differs
from basicvsr_archival.evaluation.metrics import psnr

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden_restore"
ARCHIVE = GOLDEN / "tiny_ci_x2.tar"
RESTORED = GOLDEN / "restored.mkv"
ARCHIVE_SHA256 = "444c90948665fb81801cd147f70f88bc5f57483bd3ea3b0ef3a13b2ae649a705"
RESTORED_SHA256 = "cc4eff9011fd6e48d18fcde1471482dbfdc9f6059b11b434675c9113db79273e"


def _sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest() -> dict:
    """The golden archive's manifest."""
    with tarfile.open(ARCHIVE) as tar:
        return json.load(tar.extractfile("manifest.json"))


def test_golden_files_are_the_committed_ones():
    assert _sha256(ARCHIVE) == ARCHIVE_SHA256
    assert _sha256(RESTORED) == RESTORED_SHA256


def test_golden_archive_restores_to_the_same_bytes(tmp_path):
    if not warn_if_backend_differs(_manifest(), torch.device("cpu"), str(ARCHIVE)):
        pytest.skip("torch / CPU instruction set / C kernels differ from the golden archive's record")
    out = tmp_path / "restored.mkv"
    res = restore_archive(ARCHIVE, out, progress=False)
    assert (res.num_frames, res.width, res.height, res.max_seq_len, res.overlap) == (6, 128, 96, 4, 1)
    got, want = list(decoded_frames(out)), list(decoded_frames(RESTORED))
    assert len(got) == len(want) == 6
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == b.shape == (96, 128, 3)
        diff = int(np.abs(a.astype(int) - b).max())
        assert psnr(a, b) == float("inf"), f"frame {i}: {psnr(a, b):.2f} dB, max difference {diff}"
    assert _sha256(out) == RESTORED_SHA256
