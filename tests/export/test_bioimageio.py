"""`voxseg export --format bioimageio`: a package the BioImage Model Zoo's own test accepts."""

from __future__ import annotations

import zipfile

import h5py
import pytest
import tifffile
import yaml
from conftest import FAST, write_dataset

import voxseg
from voxseg.cli import main

pytest.importorskip("bioimageio.core")


def test_the_package_passes_bioimageio_test(tmp_path) -> None:
    from bioimageio.core import test_model

    images, labels = write_dataset(tmp_path / "data", n=2, size=16, cells=2)
    for tif in images.glob("*.tif"):  # HDF5 images with a voxel size: the package's axes carry it
        with h5py.File(tif.with_suffix(".h5"), "w") as handle:
            handle["raw"] = tifffile.imread(tif)
            handle["raw"].attrs["element_size_um"] = [2.0, 0.5, 0.5]
        tif.unlink()
    config = voxseg.TrainConfig(images=images, labels=labels, results=tmp_path / "r", run_name="m", **FAST)
    run_dir = voxseg.train(config, progress=False).run_dir
    package = tmp_path / "model.zip"
    assert main(["export", str(run_dir), "--format", "bioimageio", "--output", str(package)]) == 0
    names = set(zipfile.ZipFile(package).namelist())
    assert {"rdf.yaml", "test_input.npy", "test_output.npy", "cover.png", "README.md"} <= names
    rdf = yaml.safe_load(zipfile.ZipFile(package).read("rdf.yaml"))
    space = [axis for axis in rdf["inputs"][0]["axes"] if axis["type"] == "space"]
    assert [(a["id"], a["scale"], a["unit"]) for a in space] == [
        ("z", 2.0, "micrometer"),
        ("y", 0.5, "micrometer"),
        ("x", 0.5, "micrometer"),
    ]
    summary = test_model(package)
    assert summary.status == "passed", summary.format()
    assert main(["export", str(run_dir), "--format", "bioimageio", "--output", str(package)]) == 2  # kept
