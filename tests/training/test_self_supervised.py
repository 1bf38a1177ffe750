"""WNet3D trains on images alone: no label file is read, the run folder is complete, validation labels
(when given) only score it, and `voxseg predict` uses the run like any other."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import voxseg
from tests.conftest import FAST, run_cli
from voxseg.config import TrainConfig
from voxseg.errors import ConfigError

Dataset = Callable[..., tuple[Path, Path]]

SELF_SUPERVISED: dict[str, Any] = {
    **FAST,
    "model": "WNet3D",
    "loss": "auto",
    "patch_size": 24,
    "samples_per_image": 2,
    "epochs": 2,
}


def _config(images: Path, results: Path, **overrides: Any) -> TrainConfig:
    return TrainConfig(images=images, results=results, **{"run_name": "w", **SELF_SUPERVISED, **overrides})


def test_trains_on_images_alone_and_predicts(make_dataset: Dataset, tmp_path: Path) -> None:
    images, labels = make_dataset(tmp_path / "data", n=2, size=24, cells=3)
    moved = tmp_path / "hidden-labels"
    labels.rename(moved)  # no label file exists anywhere near the run
    result = voxseg.train(_config(images, tmp_path / "results"))
    run = tmp_path / "results" / "w"
    assert result.status == "completed"
    for name in ("best.pth", "last.pth", "checkpoint.pt", "config.yaml", "metrics.csv", "summary.json"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "WNet3D"
    assert summary["validated_against"] == "partitions" and summary["foreground_class"] == 1
    roles = [entry["role"] for entry in json.loads((run / "run.json").read_text())["inputs"]]
    assert roles and all(role.endswith("image") for role in roles)  # no label file was an input

    output = tmp_path / "predicted"
    assert run_cli(["predict", run, "--input", images, "--output", output]) == 0
    mask = tifffile.imread(output / "vol_00_mask.tif")
    assert mask.shape == (24, 24, 24) and mask.any()
    volume = ["--input", images / "vol_00.tif", "--save-probabilities"]
    for name, chosen in (("nucleus", "1"), ("background", "0")):
        assert (
            run_cli(["predict", run, *volume, "--output", tmp_path / name, "--foreground-class", chosen]) == 0
        )
    nucleus, background = (
        tifffile.imread(tmp_path / name / "vol_00_prob.tif") for name in ("nucleus", "background")
    )
    np.testing.assert_allclose(nucleus + background, 1.0, atol=1e-5)  # K = 2: the other class is the rest
    assert run_cli(["predict", run, *volume, "--output", tmp_path / "x", "--foreground-class", "2"]) == 2
    exported = tmp_path / "wnet.pt"  # the encoder's foreground logit, checked against PyTorch on export
    assert run_cli(["export", run, "--format", "torchscript", "--output", exported]) == 0
    assert exported.is_file()


def test_the_loss_terms_are_recorded_and_a_resumed_run_trains_as_one(
    make_dataset: Dataset, tmp_path: Path
) -> None:
    """metrics.csv, the log and the curves carry each term; extending a run equals training longer."""
    images, _ = make_dataset(tmp_path / "data", n=2, size=24, cells=3)
    short = voxseg.train(_config(images, tmp_path / "results", run_name="short", epochs=1), progress=False)
    rows = (short.run_dir / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert header[-3:] == ["ncut_loss", "reconstruction_loss", "partition_loss"]
    ncut, reconstruction, partition = (float(value) for value in rows[1].split(",")[-3:])
    assert 0 < ncut < 2 and reconstruction > 0 and partition > 0  # K = 2: the N-cut lies in [0, 2]
    assert "N-cut " in (short.run_dir / "train.log").read_text()

    longer = TrainConfig.from_yaml(short.run_dir / "config.yaml")
    longer.epochs, longer.zip = 2, True
    extended = voxseg.train(longer, progress=False, resume=short.run_dir)
    assert extended.status == "completed" and extended.summary["epochs_completed"] == 2
    assert (short.run_dir / "plots" / "training_curves.png").is_file()
    assert (short.run_dir.with_name("short.zip")).is_file()
    straight = voxseg.train(_config(images, tmp_path / "results", run_name="straight"), progress=False)
    resumed_rows = (short.run_dir / "metrics.csv").read_text().splitlines()
    straight_rows = (straight.run_dir / "metrics.csv").read_text().splitlines()
    for resumed, uninterrupted in zip(resumed_rows[1:], straight_rows[1:], strict=True):
        first, second = resumed.split(","), uninterrupted.split(",")
        assert first[1] == second[1] and first[-3:] == second[-3:]  # the same losses, term by term


def test_validation_labels_score_the_run_but_never_train_it(make_dataset: Dataset, tmp_path: Path) -> None:
    images, _ = make_dataset(tmp_path / "train", n=2, size=24, seed=0)
    val_images, val_labels = make_dataset(tmp_path / "val", n=1, size=24, seed=5)
    config = _config(images, tmp_path / "results", val_images=val_images, val_labels=val_labels)
    result = voxseg.train(config)
    assert result.status == "completed"
    assert 0.0 < result.summary["best_val_dice"] <= 1.0


def test_labels_are_refused_with_wnet3d_and_required_otherwise(make_dataset: Dataset, tmp_path: Path) -> None:
    images, labels = make_dataset(tmp_path / "data", n=1, size=24)
    with pytest.raises(ConfigError, match="trains on images alone"):
        TrainConfig(images=images, labels=labels, model="WNet3D").resolved()
    code = run_cli(["train", "--images", images, "--results", tmp_path / "r"])
    assert code == 2 and not (tmp_path / "r").exists()


def test_the_self_supervised_options_reach_the_loss(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path, classes=3, ncut_weight=0.0, ncut_radius=3).resolved()
    terms = config.self_supervision()
    assert terms is not None and terms.ncut_weight == 0.0 and terms.radius == 3
    assert TrainConfig(images=tmp_path, labels=tmp_path).resolved().self_supervision() is None
    assert np.isclose(config.partition_weight, 1.0)
