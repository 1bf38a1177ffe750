"""Every run says what produced it (run.json, `voxseg info`) and writes TensorBoard events."""

from __future__ import annotations

import json

import pytest

import voxseg
from voxseg.cli import main
from voxseg.training.run_card import sha256


def test_run_card_tensorboard_and_info(tmp_path, make_dataset, fast_config, capsys) -> None:
    images, labels = make_dataset(tmp_path / "data", n=3, size=16, cells=2)
    result = voxseg.train(fast_config(images, labels, epochs=2), progress=False)
    card = json.loads((result.run_dir / "run.json").read_text())
    assert {"voxseg", "torch", "monai", "python"} <= set(card["versions"])
    assert card["options"]["epochs"] == 2 and card["result"]["status"] == "completed"
    inputs = {i["path"]: i for i in card["inputs"]}
    assert len(inputs) == 6  # 3 images, 3 labels
    first = sorted(images.iterdir())[0]
    assert inputs[str(first)]["sha256"] == sha256(first) and inputs[str(first)]["shape"] == [16, 16, 16]
    assert card["split"]["train"] and card["split"]["validation"]
    how = card["split"]["how"]  # what validates, and why
    assert "1 for validation" in how and card["split"]["validation"][0] in how

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (result.run_dir / "tensorboard").glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    dice = accumulator.Scalars("dice/validation")
    assert [s.step for s in dice] == [1, 2]
    rows = (result.run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [s.value for s in dice] == pytest.approx([float(row.split(",")[2]) for row in rows], abs=1e-6)
    assert "validation/prediction" in accumulator.Tags()["images"]

    assert main(["info", str(result.run_dir)]) == 0
    out = capsys.readouterr().out
    assert "SegResNet" in out and sha256(first)[:16] in out and "completed" in out


def test_no_tensorboard(tmp_path, make_dataset, fast_config) -> None:
    images, labels = make_dataset(tmp_path / "data", n=2, size=16, cells=2)
    result = voxseg.train(fast_config(images, labels, tensorboard=False), progress=False)
    assert not (result.run_dir / "tensorboard").exists() and (result.run_dir / "run.json").is_file()
