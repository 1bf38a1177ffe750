"""`voxseg predict` on Zarr and HDF5 inputs: outputs in the input's format carrying its voxel size,
the same masks as from TIFF, keys and levels, and runs trained on isotropic voxels."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from conftest import FAST, run_cli, train_small_run, write_dataset

import voxseg
from voxseg.config import TrainConfig
from voxseg.io.formats import open_volume


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, images, labels) of a small trained SegResNet."""
    return train_small_run(tmp_path_factory.mktemp("trained"))


def _as_ome_zarr(array: np.ndarray, path: Path, voxel_size: tuple[float, float, float]) -> None:
    """An OME-Zarr 0.4 image with two levels, as ome-zarr-py or BigStitcher write one."""
    group = zarr.open_group(path, mode="w", zarr_format=2)
    group.create_array("0", shape=array.shape, dtype=array.dtype)[...] = array
    half = array[:, ::2, ::2]
    group.create_array("1", shape=half.shape, dtype=half.dtype)[...] = half
    scales = [list(voxel_size), [voxel_size[0], voxel_size[1] * 2, voxel_size[2] * 2]]
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
            "datasets": [
                {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": s}]}
                for i, s in enumerate(scales)
            ],
        }
    ]


def test_zarr_and_hdf5_inputs_give_the_tiff_masks_in_their_own_format(trained, tmp_path) -> None:
    run_dir, images, _ = trained
    image = tifffile.imread(images / "vol_00.tif")
    inputs = tmp_path / "in"
    inputs.mkdir()
    _as_ome_zarr(image, inputs / "vol_00.zarr", (2.0, 0.5, 0.5))
    with h5py.File(inputs / "vol_01.h5", "w") as handle:
        handle.create_dataset("raw", data=image, chunks=(8, 8, 8))
        handle["raw"].attrs["element_size_um"] = [3.0, 1.0, 1.0]
        handle["other"] = np.zeros((4, 4), np.uint8)  # 2D: not a candidate volume
    assert run_cli(["predict", run_dir, "--input", images / "vol_00.tif", "--output", tmp_path / "tif"]) == 0
    out = tmp_path / "out"
    argv = ["predict", run_dir, "--input", inputs, "--output", out, "--instances", "watershed"]
    assert run_cli([*argv, "--save-probabilities"]) == 0
    reference = tifffile.imread(tmp_path / "tif" / "vol_00_mask.tif")
    for name, suffix, size in (("vol_00", ".zarr", (2.0, 0.5, 0.5)), ("vol_01", ".h5", (3.0, 1.0, 1.0))):
        for kind in ("mask", "labels", "prob"):
            written = open_volume(out / f"{name}_{kind}{suffix}")
            assert written.shape == image.shape and written.voxel_size == size
        np.testing.assert_array_equal(open_volume(out / f"{name}_mask{suffix}")[:], reference)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_a_channel_of_a_hyperstack_predicts_as_that_channel_alone(trained, tmp_path, capsys) -> None:
    run_dir, images, _ = trained
    image = tifffile.imread(images / "vol_00.tif")
    stack = tmp_path / "in" / "vol_00.tif"
    stack.parent.mkdir()
    dimmed = (image // 3).astype(image.dtype)  # a second stain, so that the channel matters
    tifffile.imwrite(stack, np.stack([dimmed, image], axis=1), imagej=True, metadata={"axes": "ZCYX"})
    argv = ["predict", run_dir, "--input", stack, "--output", tmp_path / "out"]
    assert run_cli(argv) == 2
    assert "2 channels on axis 1" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert run_cli([*argv, "--channel", "1"]) == 0
    assert (
        run_cli(["predict", run_dir, "--input", images / "vol_00.tif", "--output", tmp_path / "plain"]) == 0
    )
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "out" / "vol_00_mask.tif"),
        tifffile.imread(tmp_path / "plain" / "vol_00_mask.tif"),
    )


def test_a_time_point_of_a_series_predicts_as_that_volume_alone(trained, tmp_path, capsys) -> None:
    """--timepoint reads one volume of a TZYX file; its outputs are named by it, so the time points
    of a series predict side by side into one folder."""
    run_dir, images, _ = trained
    image = tifffile.imread(images / "vol_00.tif")
    series = tmp_path / "in" / "cells.tif"
    series.parent.mkdir()
    tifffile.imwrite(series, np.stack([image[:, ::-1], image]), imagej=True, metadata={"axes": "TZYX"})
    argv = ["predict", run_dir, "--input", series, "--output", tmp_path / "out"]
    assert run_cli(argv) == 2
    assert "give --timepoint T (0 to 1)" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert run_cli([*argv, "--timepoint", "1"]) == 0 and run_cli([*argv, "--timepoint", "0"]) == 0
    assert run_cli(["predict", run_dir, "--input", images / "vol_00.tif", "--output", tmp_path / "one"]) == 0
    alone = tifffile.imread(tmp_path / "one" / "vol_00_mask.tif")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "cells_t1_mask.tif"), alone)
    assert tifffile.imread(tmp_path / "out" / "cells_t0_mask.tif").shape == alone.shape


@pytest.mark.parametrize("output_format", ["tiff", "zarr", "hdf5"])
def test_every_output_is_readable_by_others_under_the_usual_umask(trained, tmp_path, output_format) -> None:
    run_dir, images, _ = trained
    out = tmp_path / "out"
    previous = os.umask(0o022)
    try:
        argv = ["predict", run_dir, "--input", images / "vol_00.tif", "--output", out]
        argv += ["--output-format", output_format, "--instances", "watershed", "--save-probabilities"]
        assert run_cli(argv) == 0
    finally:
        os.umask(previous)
    written = [out, *out.rglob("*")]
    assert len(written) > 4
    private = [p.name for p in written if not p.stat().st_mode & stat.S_IROTH]
    closed = [p.name for p in written if p.is_dir() and not p.stat().st_mode & stat.S_IXOTH]
    assert private == [] and closed == []


def test_output_format_and_level(trained, tmp_path) -> None:
    run_dir, images, _ = trained
    image = tifffile.imread(images / "vol_00.tif")
    _as_ome_zarr(image, tmp_path / "vol.zarr", (2.0, 0.5, 0.5))
    out = tmp_path / "out"
    argv = ["predict", run_dir, "--input", tmp_path / "vol.zarr", "--output", out, "--output-format", "tiff"]
    assert run_cli([*argv, "--level", "1"]) == 0
    mask = open_volume(out / "vol_mask.tif")
    assert mask.shape == image[:, ::2, ::2].shape and mask.voxel_size == (2.0, 1.0, 1.0)


def test_evaluate_scores_zarr_predictions_against_tiff_labels(trained, tmp_path, capsys) -> None:
    run_dir, images, labels = trained
    inputs = tmp_path / "in"
    inputs.mkdir()
    for tif in images.glob("*.tif"):
        _as_ome_zarr(tifffile.imread(tif), inputs / f"{tif.stem}.zarr", (1.0, 1.0, 1.0))
    out = tmp_path / "out"
    assert run_cli(["predict", run_dir, "--input", inputs, "--output", out, "--instances", "connected"]) == 0
    scores = tmp_path / "scores.json"
    assert run_cli(["evaluate", "--pred", out, "--labels", labels, "--json", scores]) == 0
    assert json.loads(scores.read_text())["overall"]["volumes"] == 3


def test_a_voxel_size_goes_from_tiff_to_the_run_card_to_the_prediction(tmp_path) -> None:
    images, labels = write_dataset(tmp_path / "d", n=2, size=24)
    for tif in list(images.glob("*.tif")) + list(labels.glob("*.tif")):
        tifffile.imwrite(
            tif,
            tifffile.imread(tif),
            ome=True,
            metadata={"PhysicalSizeZ": 1.5, "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25},
        )
    config = TrainConfig(images=images, labels=labels, results=tmp_path / "r", run_name="m", **FAST)
    run = voxseg.train(config, progress=False).run_dir
    assert json.loads((run / "run.json").read_text())["voxel_size_um"] == [1.5, 0.25, 0.25]
    assert run_cli(["predict", run, "--input", images, "--output", tmp_path / "out"]) == 0
    assert open_volume(tmp_path / "out" / "vol_00_mask.tif").voxel_size == (1.5, 0.25, 0.25)


def test_a_run_on_isotropic_voxels_predicts_on_the_input_grid(tmp_path, capsys) -> None:
    images, labels = write_dataset(tmp_path / "d", n=2, size=(12, 24, 24))
    options = {**FAST, "spacing": (2.0, 1.0, 1.0), "resample": "isotropic"}
    config = TrainConfig(images=images, labels=labels, results=tmp_path / "r", run_name="m", **options)
    run = voxseg.train(config, progress=False).run_dir
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resample"] == "isotropic" and summary["voxel_size_um"] == [1.0, 1.0, 1.0]
    out = tmp_path / "out"
    argv = ["predict", run, "--input", images / "vol_00.tif", "--output", out]
    assert run_cli(argv) == 2  # the input has no voxel size of its own
    assert "--spacing" in capsys.readouterr().err and not out.exists()
    assert run_cli([*argv, "--spacing", "2,1,1", "--save-probabilities"]) == 0
    mask = open_volume(out / "vol_00_mask.tif")
    assert mask.shape == (12, 24, 24) and mask.voxel_size == (2.0, 1.0, 1.0)


def test_evaluate_reads_truth_from_a_named_hdf5_dataset(trained, tmp_path, capsys) -> None:
    run_dir, images, labels = trained
    out, truth = tmp_path / "out", tmp_path / "truth"
    truth.mkdir()
    for tif in labels.glob("*.tif"):  # an ilastik-style file: raw data and labels side by side
        with h5py.File(truth / f"{tif.stem}.h5", "w") as handle:
            handle["raw"] = np.zeros((4, 4, 4), np.float32)
            handle["exported/labels"] = tifffile.imread(tif)
    assert run_cli(["predict", run_dir, "--input", images, "--output", out]) == 0
    assert run_cli(["evaluate", "--pred", out, "--labels", truth]) == 2  # two candidate datasets
    assert "--image-key/--label-key" in capsys.readouterr().err
    scores = tmp_path / "scores.json"
    argv = ["evaluate", "--pred", out, "--labels", truth, "--label-key", "exported/labels", "--json", scores]
    assert run_cli(argv) == 0
    assert json.loads(scores.read_text())["overall"]["dice"] > 0.5
