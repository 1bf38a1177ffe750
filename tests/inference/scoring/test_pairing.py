"""`voxseg evaluate`'s pairing of predictions with ground truths: by name, a subset scored, `--strict`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import synthetic_volume

from voxseg.errors import DataError
from voxseg.inference.scoring.pairing import EvalPair, pair_predictions

SHAPE = (12, 16, 16)


def _write(folder: Path, name: str, array: np.ndarray | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / name, _truth(0) if array is None else array)
    return folder / name


def _truth(seed: int) -> np.ndarray:
    return synthetic_volume(SHAPE, seed=seed, cells=3)[1]


def test_pairs_by_name(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for index in range(3):
        _write(gt, f"vol_{index:02d}_label.tif")
    for name in (
        "vol_00_labels.tif",
        "vol_00_mask.tif",
        "vol_00_prob.tif",
        "vol_01_labels.tif",
        "vol_02_mask.tif",
    ):
        _write(pred, name)
    (pred / "vol_00_objects.csv").write_text("id,voxels\n")  # not a volume: not looked at
    pairing = pair_predictions(pred, gt)
    pairs = pairing.pairs
    assert [p.name for p in pairs] == ["vol_00", "vol_01", "vol_02"]
    assert pairs[0] == EvalPair(
        "vol_00", gt / "vol_00_label.tif", pred / "vol_00_mask.tif", pred / "vol_00_labels.tif"
    )
    assert pairs[2].labels is None and not pairs[2].has_instances and pairs[0].has_instances
    assert (pairing.truths_without_prediction, pairing.predictions_without_truth) == ([], [])


@pytest.mark.parametrize("truth_name", ["Cell.tif", "cell_gt.tiff", "cell-labels.TIF", "cell_mask.tif"])
def test_ground_truth_names_follow_training_rules(tmp_path: Path, truth_name: str) -> None:
    """Bare names and every label suffix pair, ignoring case and .tif/.tiff."""
    _write(tmp_path / "gt", truth_name)
    _write(tmp_path / "pred", "cell_labels.tiff")
    (pair,) = pair_predictions(tmp_path / "pred", tmp_path / "gt").pairs
    assert pair.truth.name == truth_name and pair.labels is not None and pair.mask is None


def test_a_subset_of_the_ground_truths_is_scored_and_the_rest_listed(tmp_path: Path) -> None:
    """One volume predicted, evaluated against the whole labels folder: the others are skipped."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for index in range(4):
        _write(gt, f"nuclei_q{index:02d}_label.tif")
    _write(pred, "nuclei_q02_labels.tif")
    _write(pred, "nuclei_q02_mask.tif")
    _write(pred, "other_mask.tif")  # predicted, but not annotated
    pairing = pair_predictions(pred, gt)
    assert [pair.name for pair in pairing.pairs] == ["nuclei_q02"]
    assert [p.name for p in pairing.truths_without_prediction] == [
        "nuclei_q00_label.tif",
        "nuclei_q01_label.tif",
        "nuclei_q03_label.tif",
    ]
    assert pairing.predictions_without_truth == [pred / "other_mask.tif"]


def test_strict_refuses_every_unpaired_file_in_one_line(tmp_path: Path) -> None:
    _write(tmp_path / "gt", "a.tif")
    _write(tmp_path / "gt", "b_label.tif")
    _write(tmp_path / "pred", "a_mask.tif")
    _write(tmp_path / "pred", "c_labels.tif")
    assert len(pair_predictions(tmp_path / "pred", tmp_path / "gt").pairs) == 1
    with pytest.raises(DataError) as caught:
        pair_predictions(tmp_path / "pred", tmp_path / "gt", strict=True)
    message = str(caught.value)
    assert "\n" not in message
    assert f"ground truths without a prediction in {tmp_path / 'pred'} (--strict): b_label.tif" in message
    assert f"predictions without a ground truth in {tmp_path / 'gt'} (--strict): c_labels.tif" in message
    assert "--label-name" in message


def test_nothing_paired_is_refused_naming_both_folders_and_a_few_files(tmp_path: Path) -> None:
    """mask_<name>.tif ground truths: the error names a few files of each side and the option that
    pairs them, with the pattern they suggest."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for index in range(5):
        _write(gt, f"mask_vol_{index}.tif")
        _write(pred, f"vol_{index}_labels.tif")
    with pytest.raises(DataError) as caught:
        pair_predictions(pred, gt)
    message = str(caught.value)
    assert "\n" not in message
    assert f"no prediction in {pred} has a ground truth in {gt}" in message
    assert "vol_0_labels.tif, vol_1_labels.tif, vol_2_labels.tif (and 2 more)" in message
    assert "mask_vol_0.tif, mask_vol_1.tif, mask_vol_2.tif (and 2 more)" in message
    assert message.endswith("these look like --label-name 'mask_{name}')")
    pairs = pair_predictions(pred, gt, label_name="mask_{name}").pairs
    assert [(pair.name, pair.truth.name) for pair in pairs][0] == ("vol_0", "mask_vol_0.tif")


def test_files_that_are_not_predictions_are_named(tmp_path: Path) -> None:
    """Refused with or without --strict: a file predict never writes is a wrong folder or a typo."""
    _write(tmp_path / "gt", "a.tif")
    _write(tmp_path / "pred", "a_mask.tif")
    _write(tmp_path / "pred", "a.tif")
    _write(tmp_path / "pred", "b_prob.tif")
    with pytest.raises(DataError, match=r"not predictions .*: a\.tif") as caught:
        pair_predictions(tmp_path / "pred", tmp_path / "gt")
    assert "probabilities without a _mask or _labels file" in str(caught.value)
    assert "--label-name" not in str(caught.value)  # the names are not the problem


def test_two_ground_truths_for_one_prediction(tmp_path: Path) -> None:
    _write(tmp_path / "gt", "a.tif")
    _write(tmp_path / "gt", "a_gt.tif")
    _write(tmp_path / "pred", "a_mask.tif")
    with pytest.raises(DataError, match="a.tif and a_gt.tif .* both match the prediction a"):
        pair_predictions(tmp_path / "pred", tmp_path / "gt")


def test_missing_folders_name_the_option(tmp_path: Path) -> None:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    _write(pred, "a_mask.tif")
    _write(gt, "a.tif")
    with pytest.raises(DataError, match="--pred: folder .*nowhere does not exist"):
        pair_predictions(tmp_path / "nowhere", gt)
    with pytest.raises(DataError, match="--labels: folder .*nowhere does not exist"):
        pair_predictions(pred, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"--labels: no volumes \(.tif/.tiff, .zarr or .h5/.hdf5\)"):
        pair_predictions(pred, tmp_path / "empty")
    with pytest.raises(DataError, match="same folder"):
        pair_predictions(pred, pred)
