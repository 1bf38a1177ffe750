"""Preflight names labels that look wrong for how they will be read, before anything is written."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import run_cli, synthetic_volume

from voxseg.config import TrainConfig
from voxseg.errors import DataError
from voxseg.training.preflight import preflight

SPARSE = "0:ignore,1:background,2:foreground"
SIDE = 24


def _dataset(root: Path, labels: dict[str, np.ndarray]) -> tuple[Path, Path]:
    for name, label in labels.items():
        image, _ = synthetic_volume(SIDE, seed=len(name))
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "images" / name, image)
        tifffile.imwrite(root / "labels" / name, label)
    return root / "images", root / "labels"


def _reviewed_planes() -> np.ndarray:
    """The issue's case: three planes reviewed in napari, 1 background and 2 nuclei, the rest 0."""
    _, ids = synthetic_volume(SIDE, cells=4)
    label = np.zeros(ids.shape, np.uint8)
    for z in (5, 12, 18):
        label[z] = np.where(ids[z] > 0, 2, 1)
    return label


def _two_objects() -> np.ndarray:
    return synthetic_volume(SIDE, cells=2)[1].astype(np.uint8)


def test_sparse_labels_without_a_map_are_refused(
    tmp_path: Path, fast_config: Callable[..., TrainConfig]
) -> None:
    images, labels = _dataset(tmp_path / "data", {"a.tif": _reviewed_planes()})
    refusal = re.escape(f"{labels / 'a.tif'}: looks like sparse annotations") + f".*--label-map {SPARSE}"
    with pytest.raises(DataError, match=refusal):
        preflight(fast_config(images, labels))
    assert not (tmp_path / "results").exists()


def test_given_map_or_resume_is_not_second_guessed(
    tmp_path: Path, fast_config: Callable[..., TrainConfig]
) -> None:
    images, labels = _dataset(tmp_path / "data", {"a.tif": _reviewed_planes()})
    assert preflight(fast_config(images, labels, label_map=SPARSE)).warnings == ()
    assert preflight(fast_config(images, labels, label_map="0:background,*:foreground")).warnings == ()
    assert preflight(fast_config(images, labels), resume_dir=tmp_path / "results" / "run").warnings == ()


def test_ambiguous_labels_are_a_warning_for_train_and_validation_files(
    tmp_path: Path, fast_config: Callable[..., TrainConfig]
) -> None:
    images, labels = _dataset(tmp_path / "data", {"a.tif": _two_objects(), "b.tif": _two_objects() > 0})
    val_images, val_labels = _dataset(tmp_path / "val", {"c.tif": _two_objects()})
    checked = preflight(fast_config(images, labels, val_images=val_images, val_labels=val_labels))
    assert [warning.split(":")[0] for warning in checked.warnings] == [
        str(labels / "a.tif"),
        str(val_labels / "c.tif"),
    ]
    assert all(f"--label-map {SPARSE}" in warning for warning in checked.warnings)


def test_the_command_line_refuses_with_exit_2_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = _dataset(tmp_path / "data", {"a.tif": _reviewed_planes()})
    results = tmp_path / "results"
    code = run_cli(["train", "--images", images, "--labels", labels, "--results", results, "--epochs", 1])
    assert code == 2
    assert f"--label-map {SPARSE}" in capsys.readouterr().err
    assert not results.exists()


def test_the_warning_reaches_the_prepared_run(
    tmp_path: Path, fast_config: Callable[..., TrainConfig]
) -> None:
    """The run logs its warnings (console and train.log) from the prepared run."""
    from voxseg.training.setup import prepare_run

    images, labels = _dataset(tmp_path / "data", {"a.tif": _two_objects(), "b.tif": _two_objects()})
    prepared = prepare_run(fast_config(images, labels))
    assert sum("holds only the values 0, 1 and 2" in warning for warning in prepared.warnings) == 2
