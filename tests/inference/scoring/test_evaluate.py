"""`voxseg evaluate`'s engine: scores per volume and overall, the table, JSON, and the command on a
subset of the ground truths (pairing itself: test_pairing.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import run_cli, synthetic_volume

from voxseg.errors import DataError
from voxseg.inference.scoring.evaluate import (
    ERROR_KEYS,
    F1_MEAN_KEY,
    INSTANCE_KEYS,
    evaluate,
    format_table,
    write_json,
)
from voxseg.inference.scoring.pairing import pair_predictions

SHAPE = (12, 16, 16)


def _write(folder: Path, name: str, array: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / name, array)
    return folder / name


def _truth(seed: int) -> np.ndarray:
    return synthetic_volume(SHAPE, seed=seed, cells=3)[1]


def _dataset(tmp_path: Path) -> tuple[Path, Path]:
    """vol_00: perfect instance prediction (other ids); vol_01: one cell missed; vol_02: mask only."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for index in range(3):
        _write(gt, f"vol_{index:02d}_label.tif", _truth(index))
    perfect = _truth(0).astype(np.uint32) * 1000
    _write(pred, "vol_00_labels.tif", perfect)
    _write(pred, "vol_00_mask.tif", (perfect > 0).astype(np.uint8))
    _write(pred, "vol_00_prob.tif", (perfect > 0).astype(np.float32))
    (pred / "vol_00_objects.csv").write_text("label,voxels\n")
    missed = _truth(1)
    missed[missed == missed.max()] = 0
    _write(pred, "vol_01_labels.tif", missed)
    _write(pred, "vol_01_mask.tif", (_truth(1) > 0).astype(np.uint8) * 255)
    _write(pred, "vol_02_mask.tif", (_truth(2) > 0).astype(np.uint8))
    return pred, gt


# ------------------------------------------------------------------------------------------- scoring


def test_scores_per_volume_and_overall(tmp_path: Path) -> None:
    result = evaluate(pair_predictions(*_dataset(tmp_path)))
    perfect, missed, mask_only = result["volumes"]
    assert perfect["dice"] == perfect["iou"] == 1.0
    assert (
        perfect["f1@0.5"] == perfect[F1_MEAN_KEY] == perfect["precision@0.5"] == perfect["recall@0.5"] == 1.0
    )
    assert (perfect["n_pred"], perfect["n_true"], perfect["instance_metrics"]) == (3, 3, True)
    assert [perfect[key] for key in ERROR_KEYS] == [0, 0, 0, 0]

    # the mask (all cells) scores the semantic side; the labels (one cell missing) the objects
    assert missed["dice"] == 1.0
    assert (missed["tp@0.5"], missed["fp@0.5"], missed["fn@0.5"]) == (2, 0, 1)
    assert missed["precision@0.5"] == 1.0 and missed["recall@0.5"] == pytest.approx(2 / 3)
    assert missed["f1@0.5"] == pytest.approx(0.8) and missed[F1_MEAN_KEY] == pytest.approx(0.8)
    thresholds = ["0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"]
    assert missed["f1_by_threshold"] == pytest.approx(dict.fromkeys(thresholds, 0.8))
    assert [missed[key] for key in ERROR_KEYS] == [0, 0, 1, 0]

    assert mask_only["dice"] == 1.0 and mask_only["instance_metrics"] is False
    assert all(mask_only[key] is None for key in INSTANCE_KEYS)

    overall = result["overall"]
    assert (overall["volumes"], overall["instance_volumes"]) == (3, 2)
    assert overall["dice"] == overall["dice_pooled"] == 1.0
    # counts summed over the two instance volumes: tp 5, fp 0, fn 1
    assert (overall["n_pred"], overall["n_true"], overall["tp@0.5"], overall["fn@0.5"]) == (5, 6, 5, 1)
    assert overall["f1@0.5"] == pytest.approx(10 / 11)
    assert overall[F1_MEAN_KEY] == pytest.approx(10 / 11)
    assert [overall[key] for key in ERROR_KEYS] == [0, 0, 1, 0]
    assert result["thresholds"][0] == 0.5 and len(result["thresholds"]) == 10
    assert result["warnings"] == [] and result["skipped"] == {"ground_truths": [], "predictions": []}


def test_mean_and_voxel_weighted_dice_differ(tmp_path: Path) -> None:
    """Overall `dice` is the mean over volumes; `dice_pooled` weighs every voxel the same."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    big, small = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    big[:, :8] = 1  # 12*8*16 voxels, predicted exactly
    small[0, 0, :4] = 1  # 4 voxels, predicted as 2 of them
    _write(gt, "big.tif", big)
    _write(gt, "small.tif", small)
    _write(pred, "big_mask.tif", big)
    half = small.copy()
    half[0, 0, 2:] = 0
    _write(pred, "small_mask.tif", half)
    result = evaluate(pair_predictions(pred, gt))
    assert result["volumes"][1]["dice"] == pytest.approx(2 / 3)
    assert result["overall"]["dice"] == pytest.approx((1 + 2 / 3) / 2)
    n = int(big.sum())
    assert result["overall"]["dice_pooled"] == pytest.approx(2 * (n + 2) / (2 * n + 6))
    assert result["overall"]["instance_volumes"] == 0
    assert all(result["overall"][key] is None for key in INSTANCE_KEYS)


def test_shape_mismatch_names_both_files(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    truth = _write(gt, "a.tif", _truth(0))
    wrong = _write(pred, "a_labels.tif", np.zeros((12, 16, 15), np.uint16))
    with pytest.raises(DataError, match="does not match its ground truth") as caught:
        evaluate(pair_predictions(pred, gt))
    assert str(wrong) in str(caught.value) and str(truth) in str(caught.value)
    assert "another order" not in str(caught.value)
    _write(pred, "a_labels.tif", _truth(0).transpose(2, 1, 0).copy())
    with pytest.raises(DataError, match="the same sides in another order"):
        evaluate(pair_predictions(pred, gt))


def test_2d_files_are_refused(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    _write(gt, "a.tif", np.zeros((16, 16), np.uint16))
    _write(pred, "a_mask.tif", np.zeros((16, 16), np.uint8))
    with pytest.raises(DataError, match=r"a\.tif: not a 3D volume"):
        evaluate(pair_predictions(pred, gt))


def test_bad_label_values_are_refused(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    _write(gt, "a.tif", _truth(0).astype(np.float32) + 0.5)
    _write(pred, "a_labels.tif", _truth(0))
    with pytest.raises(DataError, match=r"a\.tif: labels must be integers"):
        evaluate(pair_predictions(pred, gt))


def test_binary_ground_truth_with_several_objects_warns(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    _write(gt, "a.tif", (_truth(0) > 0).astype(np.uint8) * 255)
    _write(pred, "a_labels.tif", _truth(0))
    result = evaluate(pair_predictions(pred, gt))
    (warning,) = result["warnings"]
    assert "a.tif: a binary mask with" in warning and "not instance labels" in warning
    assert result["volumes"][0]["n_true"] == 1
    assert "warning: " in format_table(result)


def test_empty_volumes_agree(tmp_path: Path) -> None:
    """Nothing to find and nothing found: perfect scores, and the label check's warning."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    _write(gt, "a.tif", np.zeros(SHAPE, np.uint16))
    _write(pred, "a_labels.tif", np.zeros(SHAPE, np.uint16))
    result = evaluate(pair_predictions(pred, gt))
    volume = result["volumes"][0]
    assert volume["dice"] == volume["f1@0.5"] == volume[F1_MEAN_KEY] == 1.0
    assert "no foreground" in result["warnings"][0]


# ------------------------------------------------------------------------------------- table and JSON


def test_table_has_a_row_per_volume_and_overall(tmp_path: Path) -> None:
    table = format_table(evaluate(pair_predictions(*_dataset(tmp_path))))
    lines = table.splitlines()
    assert lines[0].split() == [
        "volume",
        "dice",
        "iou",
        "P@0.5",
        "R@0.5",
        "F1@0.5",
        "F1",
        "0.5:0.95",
        "pred",
        "true",
        "split/merge/miss/spur",
    ]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith(("vol_", "overall"))}
    assert rows["vol_00"] == ["1.000", "1.000", "1.000", "1.000", "1.000", "1.000", "3", "3", "0/0/0/0"]
    assert rows["vol_01"][-1] == "0/0/1/0"
    assert rows["vol_02"] == ["1.000", "1.000", "-", "-", "-", "-", "-", "-", "-"]
    assert rows["overall"][4] == f"{10 / 11:.3f}" and rows["overall"][-1] == "0/0/1/0"
    assert "no instance scores, for: vol_02" in table


def _errors_dataset(tmp_path: Path) -> tuple[Path, Path]:
    """`errors`: a nucleus in two halves, two nuclei as one, one missed, one spurious object and a
    perfect one; `spurious`: the truth predicted exactly, plus one object where there is none."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    truth = np.zeros(SHAPE, np.uint16)
    truth[0:4, 0:4, 0:4] = 1  # split in two
    truth[0:4, 0:4, 8:12] = 2  # 2 and 3 merged
    truth[0:4, 0:4, 12:16] = 3
    truth[6:10, 0:4, 0:4] = 4  # missed
    truth[6:10, 8:12, 8:12] = 5  # found exactly
    found = np.zeros(SHAPE, np.uint32)
    found[0:4, 0:4, 0:2], found[0:4, 0:4, 2:4] = 10, 11
    found[0:4, 0:4, 8:16] = 20
    found[10:12, 12:16, 0:4] = 30  # spurious
    found[6:10, 8:12, 8:12] = 40
    _write(gt, "errors.tif", truth)
    _write(pred, "errors_labels.tif", found)
    _write(gt, "spurious.tif", truth)
    _write(pred, "spurious_labels.tif", np.where(found == 30, 30, truth).astype(np.uint16))
    return pred, gt


def test_error_kinds_per_volume_overall_and_in_the_json(tmp_path: Path) -> None:
    """Each split piece and the merge match one partner at IoU 0.5 exactly: tp 3, fp 2, fn 2, and
    the errors say why: one split, one merge, one missed, one spurious."""
    result = evaluate(pair_predictions(*_errors_dataset(tmp_path)))
    out = tmp_path / "scores.json"
    write_json(out, result)
    saved = json.loads(out.read_text())
    errors, spurious = saved["volumes"]
    assert (errors["tp@0.5"], errors["fp@0.5"], errors["fn@0.5"]) == (3, 2, 2)
    assert {key: errors[key] for key in ERROR_KEYS} == {"split": 1, "merged": 1, "missed": 1, "spurious": 1}
    assert errors["mean_matched_iou@0.5"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert {key: spurious[key] for key in ERROR_KEYS} == {"split": 0, "merged": 0, "missed": 0, "spurious": 1}
    overall = saved["overall"]
    assert {key: overall[key] for key in ERROR_KEYS} == {"split": 1, "merged": 1, "missed": 1, "spurious": 2}
    assert overall["mean_matched_iou@0.5"] == pytest.approx((0.5 + 0.5 + 1.0 + 5 * 1.0) / 8)
    cells = [line.split() for line in format_table(result).splitlines()]
    rows = {row[0]: row[-1] for row in cells if row and row[0] in ("errors", "spurious", "overall")}
    assert rows == {"errors": "1/1/1/1", "spurious": "0/0/0/1", "overall": "1/1/1/2"}


def test_json_round_trip_and_overwrite(tmp_path: Path) -> None:
    result = evaluate(pair_predictions(*_dataset(tmp_path)))
    out = tmp_path / "scores.json"
    write_json(out, result)
    assert json.loads(out.read_text()) == result
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["scores.json"]  # no temporary left

    with pytest.raises(DataError, match=f"--json: {out} already exists"):
        write_json(out, {"other": 1})
    assert json.loads(out.read_text()) == result
    write_json(out, {"other": 1}, overwrite=True)
    assert json.loads(out.read_text()) == {"other": 1}

    with pytest.raises(DataError, match="does not exist"):
        write_json(tmp_path / "missing" / "scores.json", result)
    with pytest.raises(DataError, match="is a folder"):
        write_json(tmp_path, result, overwrite=True)


# ---------------------------------------------------------------------------- a subset, from the CLI


def test_a_subset_is_scored_and_the_skipped_files_are_listed(tmp_path: Path, capsys) -> None:
    """Predictions of one volume against a labels folder of three: exit 0, the skipped ground truths
    named on the console and in the JSON; `--strict` refuses the same folders."""
    pred, gt = _dataset(tmp_path)
    for path in pred.glob("vol_0[12]_*"):
        path.unlink()
    scores = tmp_path / "scores.json"
    assert run_cli(["evaluate", "--pred", pred, "--labels", gt, "--json", scores]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 ground truth(s) without a prediction (--strict refuses them): " in out
    assert "vol_01_label.tif, vol_02_label.tif" in out
    result = json.loads(scores.read_text())
    assert result["overall"]["volumes"] == 1
    assert result["skipped"] == {
        "ground_truths": [str(gt / "vol_01_label.tif"), str(gt / "vol_02_label.tif")],
        "predictions": [],
    }
    assert run_cli(["evaluate", "--pred", pred, "--labels", gt, "--strict"]) == 2
    assert "(--strict): vol_01_label.tif, vol_02_label.tif" in capsys.readouterr().err


def test_label_names_from_the_command_line(tmp_path: Path, capsys) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    _write(gt, "mask_a.tif", _truth(0))
    _write(pred, "a_labels.tif", _truth(0))
    assert run_cli(["evaluate", "--pred", pred, "--labels", gt]) == 2
    assert "--label-name 'mask_{name}'" in capsys.readouterr().err
    assert run_cli(["evaluate", "--pred", pred, "--labels", gt, "--label-name", "mask_{name}"]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert run_cli(["evaluate", "--pred", pred, "--labels", gt, "--label-name", "mask_"]) == 2
    assert "error: --label-name: 'mask_' must hold {name} once" in capsys.readouterr().err
