"""`voxseg predict` end to end on a small trained run: outputs, refusals (exit 2, nothing written),
test-time augmentation, a bare weights file, and the Python API on arrays."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
import torch
from conftest import run_cli, train_small_run

import voxseg
from voxseg.inference.provenance import read_stamp


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, images, labels) of a small trained SegResNet."""
    return train_small_run(tmp_path_factory.mktemp("trained"))


def test_predict_writes_a_mask_per_volume_that_finds_the_cells(trained, tmp_path, capsys) -> None:
    """The mask is the probability above the threshold the run tuned on its validation volumes."""
    run_dir, images, labels = trained
    threshold = json.loads((run_dir / "summary.json").read_text())["threshold"]
    assert 0 < threshold < 1
    assert (
        run_cli(["predict", run_dir, "--input", images, "--output", tmp_path / "out", "--save-probabilities"])
        == 0
    )
    out = capsys.readouterr().out
    assert "predicted 3 volume(s)" in out and "voxels/s" in out
    for image in sorted(images.iterdir()):
        mask = tifffile.imread(tmp_path / "out" / f"{image.stem}_mask.tif")
        probability = tifffile.imread(tmp_path / "out" / f"{image.stem}_prob.tif")
        truth = tifffile.imread(labels / f"{image.stem}_label.tif") > 0
        assert mask.shape == truth.shape and mask.dtype == np.uint8
        assert probability.dtype == np.float32 and probability.min() >= 0 and probability.max() <= 1
        np.testing.assert_array_equal(mask, probability >= threshold)
        dice = 2 * (mask.astype(bool) & truth).sum() / (mask.sum() + truth.sum())
        assert dice > 0.5, f"{image.name}: Dice {dice:.2f}"


def test_existing_outputs_are_refused_and_left_alone(trained, tmp_path, capsys) -> None:
    run_dir, images, _ = trained
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "vol_01_mask.tif"
    keep.write_bytes(b"precious")
    assert run_cli(["predict", run_dir, "--input", images, "--output", out]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: --output:")
        and "vol_01_mask.tif already exists" in err
        and "--overwrite" in err
    )
    assert sorted(p.name for p in out.iterdir()) == ["vol_01_mask.tif"] and keep.read_bytes() == b"precious"
    assert run_cli(["predict", run_dir, "--input", images, "--output", out, "--overwrite"]) == 0
    assert tifffile.imread(keep).shape == (24, 24, 24)


def test_an_earlier_predictions_other_outputs_are_refused_then_removed(trained, tmp_path, capsys) -> None:
    """--overwrite without instances leaves no labels or table of the earlier prediction beside the new
    mask (evaluate would score them together), whatever their format; the other volumes' are kept."""
    run_dir, images, _ = trained
    out = tmp_path / "out"
    one = tmp_path / "one"
    one.mkdir()
    (one / "vol_00.tif").symlink_to(images / "vol_00.tif")
    assert run_cli(["predict", run_dir, "--input", one, "--output", out, "--instances", "watershed"]) == 0
    (out / "vol_00_prob.zarr").mkdir()  # an earlier prediction in another format
    (out / "vol_01_labels.tif").write_bytes(b"another volume's")
    capsys.readouterr()
    mask_only = ["predict", run_dir, "--input", one, "--output", out, "--instances", "none"]
    assert run_cli(mask_only) == 2
    assert "vol_00_labels.tif already exists (and 3 more)" in capsys.readouterr().err
    assert run_cli([*mask_only, "--overwrite"]) == 0
    assert "removed vol_00_labels.tif, vol_00_objects.csv, vol_00_prob.zarr" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["vol_00_mask.tif", "vol_01_labels.tif"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-run", "RUN_DIR_OR_WEIGHTS"),
        ("missing-input", "--input"),
        ("2d-image", "not a 3D volume"),
        ("weights-without-model", "say which network it is: --model SegResNet (the file fits SegResNet)"),
        ("weights-that-do-not-fit", "holds SegResNet weights, not VNet's: give --model SegResNet"),
        ("foreign-weights-without-model", "--model NAME, one of SegResNetDS, SegResNet, VNet"),
        ("results-folder", "is a results folder, not a run; give one of its runs: "),
        ("bad-overlap", "--overlap"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(trained, tmp_path, capsys, case, expected) -> None:
    run_dir, images, _ = trained
    out = tmp_path / "out"
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((16, 16), np.float32))
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(2, 1, 3, 3, 3)}, foreign)
    argv = {
        "missing-run": ["predict", tmp_path / "nope", "--input", images, "--output", out],
        "missing-input": ["predict", run_dir, "--input", tmp_path / "nope.tif", "--output", out],
        "2d-image": ["predict", run_dir, "--input", flat, "--output", out],
        "weights-without-model": ["predict", run_dir / "best.pth", "--input", images, "--output", out],
        "weights-that-do-not-fit": [
            "predict",
            run_dir / "best.pth",
            "--model",
            "VNet",
            "--input",
            images,
            "--output",
            out,
        ],
        "foreign-weights-without-model": ["predict", foreign, "--input", images, "--output", out],
        "results-folder": ["predict", run_dir.parent, "--input", images, "--output", out],
        "bad-overlap": ["predict", run_dir, "--input", images, "--output", out, "--overlap", "1"],
    }[case]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error:") and expected in err, err
    assert not out.exists()
    if case == "results-folder":
        assert f"e.g. {run_dir}" in err


def test_a_weights_file_with_its_model_and_test_time_augmentation(trained, tmp_path) -> None:
    run_dir, images, _ = trained
    plain, flipped = tmp_path / "plain", tmp_path / "tta"
    common = ["--input", images / "vol_00.tif", "--save-probabilities", "--window", "16"]
    assert run_cli(["predict", run_dir / "best.pth", "--model", "SegResNet", "--output", plain, *common]) == 0
    assert run_cli(["predict", run_dir, "--output", flipped, "--tta", *common]) == 0
    p_plain = tifffile.imread(plain / "vol_00_prob.tif")
    p_tta = tifffile.imread(flipped / "vol_00_prob.tif")
    assert not np.allclose(p_plain, p_tta)  # the flips were really averaged in
    assert np.corrcoef(p_plain.ravel(), p_tta.ravel())[0, 1] > 0.9


def test_the_python_api_returns_arrays_for_arrays(trained, tmp_path) -> None:
    run_dir, images, _ = trained
    volume = tifffile.imread(images / "vol_00.tif")
    mask = voxseg.predict(run_dir, volume)
    (files,) = voxseg.predict(run_dir, images / "vol_00.tif", tmp_path / "out")
    np.testing.assert_array_equal(mask, tifffile.imread(files.mask))


def test_predict_then_evaluate_from_the_command_line(trained, tmp_path, capsys) -> None:
    run_dir, images, labels = trained
    out = tmp_path / "out"
    assert run_cli(["predict", run_dir, "--input", images, "--output", out, "--instances", "connected"]) == 0
    capsys.readouterr()
    kinds = sorted({p.name.split("_", 2)[-1] for p in out.iterdir()})
    assert kinds == ["labels.tif", "mask.tif", "objects.csv"]  # nothing else left (no temporary file)
    with open(out / "vol_00_objects.csv") as handle:
        stamp = read_stamp(out / "vol_00_objects.csv")
        assert handle.readline().startswith("# voxseg prediction ") and stamp is not None
        rows = list(csv.DictReader(handle))
    assert read_stamp(out / "vol_00_mask.tif") == read_stamp(out / "vol_00_labels.tif") == stamp
    assert stamp["source"] == str(run_dir.resolve()) and len(stamp["prediction"]) == 16
    assert rows and all(0.5 < float(row["mean_probability"]) <= 1 for row in rows)
    scores = tmp_path / "scores.json"
    assert run_cli(["evaluate", "--pred", out, "--labels", labels, "--json", scores]) == 0
    table = capsys.readouterr().out
    assert "overall" in table and "F1@0.5" in table
    overall = json.loads(scores.read_text())["overall"]
    assert overall["volumes"] == 3 and 0.5 < overall["dice"] <= 1 and overall["f1@0.5"] is not None
    assert (
        run_cli(["evaluate", "--pred", out, "--labels", labels, "--json", scores]) == 2
    )  # never overwritten
    assert "already exists" in capsys.readouterr().err
    assert run_cli(["evaluate", "--pred", out, "--labels", tmp_path / "nope"]) == 2
    assert "--labels" in capsys.readouterr().err
    other = tmp_path / "other"  # another prediction's labels copied beside this one's mask
    assert run_cli(["predict", run_dir, "--input", images, "--output", other, "--instances", "connected",
                    "--threshold", "0.9"]) == 0  # fmt: skip
    (out / "vol_01_labels.tif").write_bytes((other / "vol_01_labels.tif").read_bytes())
    capsys.readouterr()
    assert run_cli(["evaluate", "--pred", out, "--labels", labels]) == 2
    err = capsys.readouterr().err
    assert "vol_01_mask.tif and " in err and "vol_01_labels.tif come from different predictions" in err


def test_tune_threshold_on_a_finished_run_folder(trained, tmp_path, capsys) -> None:
    """A run from before thresholds were tuned (no threshold in summary.json) gets one on demand."""
    import shutil

    run_dir, _, _ = trained
    old = tmp_path / "old_run"
    shutil.copytree(run_dir, old)
    summary = json.loads((old / "summary.json").read_text())
    tuned_in_training = (summary.pop("threshold"), summary.pop("threshold_dice"))
    (old / "summary.json").write_text(json.dumps(summary))
    assert run_cli(["tune-threshold", old]) == 0
    assert "voxseg: threshold" in capsys.readouterr().out
    tuned = json.loads((old / "summary.json").read_text())
    assert (tuned["threshold"], tuned["threshold_dice"]) == pytest.approx(tuned_in_training, abs=1e-4)
    assert run_cli(["tune-threshold", tmp_path / "nowhere"]) == 2
    assert "RUN_DIR" in capsys.readouterr().err


def test_a_folder_that_holds_earlier_outputs_predicts_only_the_images(trained, tmp_path) -> None:
    run_dir, images, _ = trained
    folder = tmp_path / "data"
    folder.mkdir()
    tifffile.imwrite(folder / "v.tif", tifffile.imread(images / "vol_00.tif"))
    assert run_cli(["predict", run_dir, "--input", folder, "--output", folder]) == 0
    assert run_cli(["predict", run_dir, "--input", folder, "--output", folder, "--overwrite"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["v.tif", "v_mask.tif"]  # no v_mask_mask.tif


def test_segresnetds_follows_the_training_voxel_size_into_prediction(tmp_path) -> None:
    """A SegResNetDS trained on 3×1×1 µm voxels has 1×3×3 first kernels; its run folder and its weights
    file alone (with --model) both predict with it."""
    import torch
    from conftest import FAST, write_dataset

    from voxseg import TrainConfig

    images, labels = write_dataset(tmp_path / "d", n=2, size=16)
    options = {**FAST, "model": "SegResNetDS", "spacing": (3.0, 1.0, 1.0)}
    run = voxseg.train(
        TrainConfig(images=images, labels=labels, results=tmp_path / "r", **options), progress=False
    )
    state = torch.load(run.run_dir / "best.pth", weights_only=True)
    assert tuple(state["encoder.conv_init.weight"].shape[2:]) == (1, 3, 3)
    common = ["--input", images / "vol_00.tif", "--window", "16", "--save-probabilities"]
    assert run_cli(["predict", run.run_dir, "--output", tmp_path / "a", *common]) == 0
    weights_only = ["predict", run.run_dir / "best.pth", "--model", "SegResNetDS"]
    assert run_cli([*weights_only, "--output", tmp_path / "b", *common]) == 0
    a, b = (tifffile.imread(tmp_path / f / "vol_00_prob.tif") for f in "ab")
    np.testing.assert_array_equal(a, b)


def test_a_run_s_own_weights_file_predicts_as_its_run_folder(trained, tmp_path) -> None:
    """`RUN/best.pth --model M` takes the run's window, threshold and nucleus size (a copy elsewhere
    cannot: it gets the defaults)."""
    run_dir, images, _ = trained
    common = ["--input", images / "vol_00.tif", "--instances", "auto"]
    assert run_cli(["predict", run_dir, "--output", tmp_path / "run", *common]) == 0
    assert (
        run_cli(
            ["predict", run_dir / "best.pth", "--model", "SegResNet", "--output", tmp_path / "w", *common]
        )
        == 0
    )
    for kind in ("mask", "labels"):
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "run" / f"vol_00_{kind}.tif"),
            tifffile.imread(tmp_path / "w" / f"vol_00_{kind}.tif"),
        )
