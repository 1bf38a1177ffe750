"""Every run says what produced it (run.json, `voxseg info`) and writes TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import voxseg
from voxseg.cli import main
from voxseg.runtime.files import sha256


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
    thresholds = [s.value for s in accumulator.Scalars("threshold/validation")]
    at_half = [s.value for s in accumulator.Scalars("dice/validation_at_0.5")]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert len(thresholds) == len(at_half) == 2 and 0 < thresholds[-1] < 1
    best = max(s.value for s in dice)  # the curve shows the Dice that picks best.pth
    assert best == pytest.approx(summary["best_val_dice"], abs=1e-6)

    (held_out,) = card["split"]["validation"]  # held out whole from the training folder
    roles = {Path(i["path"]).name: i["role"] for i in card["inputs"]}
    label = next(name for name in roles if name.startswith(Path(held_out).stem) and name != held_out)
    assert roles.pop(held_out) == "validation image" and roles.pop(label) == "validation label"
    assert set(roles.values()) == {"train image", "train label"}

    assert main(["info", str(result.run_dir)]) == 0
    out = capsys.readouterr().out
    assert "SegResNet" in out and sha256(first)[:16] in out and "completed" in out
    assert f"best validation Dice {round(summary['best_val_dice'], 3):g} " in out  # not 17 digits


def test_run_card_roles_when_blocks_of_one_volume_validate(tmp_path, make_dataset, fast_config) -> None:
    images, labels = make_dataset(tmp_path / "data", n=1, size=32, cells=4)
    result = voxseg.train(fast_config(images, labels, epochs=1), progress=False)
    card = json.loads((result.run_dir / "run.json").read_text())
    assert {i["role"] for i in card["inputs"]} == {
        "train + validation blocks image",
        "train + validation blocks label",
    }


def test_no_tensorboard(tmp_path, make_dataset, fast_config) -> None:
    images, labels = make_dataset(tmp_path / "data", n=2, size=16, cells=2)
    result = voxseg.train(fast_config(images, labels, tensorboard=False), progress=False)
    assert not (result.run_dir / "tensorboard").exists() and (result.run_dir / "run.json").is_file()
