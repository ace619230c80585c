"""Safe checkpoint reading: one line naming the file that says what is wrong with it."""

from __future__ import annotations

import fractions
from pathlib import Path

import pytest
import torch

from basicvsr_archival.utils.checkpoint import CheckpointReadError, read_state_dict


@pytest.fixture
def checkpoints(tmp_path: Path) -> dict[str, Path]:
    """A good checkpoint and bad ones: random bytes, text, empty, truncated, holding an unsafe object."""
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"module.w": torch.arange(6.0)}}, good)
    data = good.read_bytes()
    files = {"good": good}
    contents = {
        "random": torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
        .to(torch.uint8)
        .numpy()
        .tobytes(),
        "text": b"not a checkpoint\n",
        "empty": b"",
        "truncated": data[: len(data) // 2],
    }
    for name, blob in contents.items():
        files[name] = tmp_path / f"{name}.pth"
        files[name].write_bytes(blob)
    files["unsafe"] = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "fps": fractions.Fraction(1, 2)}, files["unsafe"])
    return files


def test_good_checkpoint_reads(checkpoints: dict[str, Path]) -> None:
    state = read_state_dict(checkpoints["good"])
    assert list(state) == ["w"] and state["w"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("random", "not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)"),
        ("text", "not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)"),
        ("empty", "not a PyTorch checkpoint (the file is empty)"),
        (
            "truncated",
            "damaged or truncated PyTorch checkpoint (PytorchStreamReader failed reading zip archive",
        ),
        (
            "unsafe",
            "checkpoint holds a Python object (fractions.Fraction) that a safe (weights-only) load refuses",
        ),
        ("missing", "checkpoint file not found"),
    ],
)
def test_bad_checkpoints_get_one_honest_line(checkpoints: dict[str, Path], name: str, says: str) -> None:
    path = checkpoints.get(name, checkpoints["good"].parent / "missing.pth")
    with pytest.raises(CheckpointReadError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {says}"), message
    assert "\n" not in message and "likely succeed" not in message and len(message) < 250
