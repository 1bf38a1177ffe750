"""`voxseg export --format bioimageio`: a package the BioImage Model Zoo's own test accepts, with voxseg's
metadata inside, the user's authors, licence and citations, and the placeholders it wrote said aloud."""

from __future__ import annotations

import zipfile

import h5py
import pytest
import tifffile
import yaml
from conftest import FAST, run_cli, write_dataset

import voxseg

pytest.importorskip("bioimageio.core")


def _rdf(package) -> dict:
    return yaml.safe_load(zipfile.ZipFile(package).read("rdf.yaml"))


def test_the_package_passes_bioimageio_test(tmp_path, capsys) -> None:
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
    assert run_cli(["export", run_dir, "--format", "bioimageio", "--output", package]) == 0
    out = capsys.readouterr().out
    assert (
        "probabilities are within" in out and "of voxseg's on the test input" in out
    )  # the README's promise
    assert "threshold it at 0.50" in out
    for placeholder in ('--authors "Name; Name"', "--license SPDX_ID", '--cite "TEXT DOI-or-URL"'):
        assert placeholder in out
    names = set(zipfile.ZipFile(package).namelist())
    assert {"rdf.yaml", "test_input.npy", "test_output.npy", "cover.png", "README.md"} <= names
    rdf = _rdf(package)
    assert "https://github.com/)" not in zipfile.ZipFile(package).read("README.md").decode()
    space = [axis for axis in rdf["inputs"][0]["axes"] if axis["type"] == "space"]
    assert [(a["id"], a["scale"], a["unit"]) for a in space] == [
        ("z", 2.0, "micrometer"),
        ("y", 0.5, "micrometer"),
        ("x", 0.5, "micrometer"),
    ]
    meta = rdf["config"]["voxseg"]
    assert meta["threshold"] == 0.5 and meta["voxel_size_um"] == [2.0, 0.5, 0.5]
    assert meta["normalisation"]["clip_percentiles"] == [1.0, 99.8] and meta["size_rule"]["divisor"] == 8
    if "weights.onnx" in names:  # the weights carry the same metadata as `--format onnx` writes
        import onnx

        weights = onnx.load_from_string(zipfile.ZipFile(package).read("weights.onnx"))
        assert {p.key: p.value for p in weights.metadata_props}["voxseg.threshold"] == "0.5"

    credited = [
        *("--authors", "Ada Lovelace; Alan Turing", "--license", "CC-BY-4.0"),
        *("--cite", "Doe et al. 2025 https://doi.org/10.1234/abcd; Roe 2024, Nuclei 10.5678/efgh"),
    ]
    assert (
        run_cli(["export", run_dir, "--format", "bioimageio", "--output", package, "--overwrite", *credited])
        == 0
    )
    assert "placeholder" not in capsys.readouterr().out
    rdf = _rdf(package)
    assert [a["name"] for a in rdf["authors"]] == ["Ada Lovelace", "Alan Turing"]
    assert rdf["license"] == "CC-BY-4.0"
    assert [(c["text"], c.get("doi"), c.get("url")) for c in rdf["cite"]] == [
        ("Doe et al. 2025", "10.1234/abcd", None),
        ("Roe 2024, Nuclei", "10.5678/efgh", None),
    ]
    summary = test_model(package)
    assert summary.status == "passed", summary.format()
    assert run_cli(["export", run_dir, "--format", "bioimageio", "--output", package]) == 2  # kept


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--license", "Nonsense-1.0"], "--license: 'Nonsense-1.0' is not an SPDX licence identifier"),
        (["--cite", "Doe et al. 2025"], "--cite: 'Doe et al. 2025' must be TEXT then a DOI or URL"),
        (["--authors", "Lab/Group"], "--authors: expected names without slashes"),
    ],
)
def test_bad_package_fields_exit_2_before_any_work(tmp_path, capsys, flags, message) -> None:
    argv = ["export", tmp_path, "--format", "bioimageio", "--output", tmp_path / "m.zip", *flags]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.zip").exists()


def test_package_notes_name_only_the_placeholders_written(tmp_path) -> None:
    from voxseg.export.bioimageio import Package, package_notes

    notes = package_notes(
        Package(tmp_path / "m.zip", 0.0123, 0.4, (("licence", "MIT", "--license SPDX_ID"),))
    )
    text = "\n".join(notes)
    assert "within 0.0123" in text and "threshold it at 0.40" in text
    assert "licence: MIT (give --license SPDX_ID" in text and "--authors" not in text
    assert len(notes) == 4  # the difference, the threshold, and the one placeholder under its heading
