"""Where an output came from, stored by the writers in each format so the file stays an ordinary
volume, and read back by `read_provenance` (None for files without it, never an error)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from voxseg.io.formats import open_volume, read_provenance
from voxseg.io.tiff import voxel_size
from voxseg.io.writers import create_volume, planes_of, volume_writer

SHAPE = (5, 6, 7)
VOXEL = (2.0, 0.5, 0.25)
DATA = np.random.default_rng(0).integers(0, 60000, SHAPE).astype(np.uint16)
STAMP = {
    "prediction": "0123abcd",
    "weights_sha256": "f" * 64,
    "source": 'runs/a <b> & "c"',  # what XML and JSON must escape
    "settings": json.dumps({"tile": [32, 64, 64], "threshold": 0.5}),
    "Namespace": "a key tifffile's MapAnnotation would take for its own",
    "Description": "another",
}
SUFFIXES = [".tif", ".zarr", ".h5"]


def _write(path: Path, provenance: dict[str, str] | None) -> Path:
    with volume_writer(path, SHAPE, DATA.dtype, False, VOXEL, provenance=provenance) as out:
        out[0:2] = DATA[0:2]
        out[2:5] = DATA[2:5]
    return path


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_format_keeps_the_provenance(tmp_path: Path, suffix: str) -> None:
    """The dict comes back as written, and the volume reads as it would without it."""
    path = _write(tmp_path / f"out{suffix}", STAMP)
    assert read_provenance(path) == STAMP
    volume = open_volume(path)
    np.testing.assert_array_equal(volume[:], DATA)
    assert volume.voxel_size == pytest.approx(VOXEL)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_volume_written_without_provenance_has_none(tmp_path: Path, suffix: str) -> None:
    assert read_provenance(_write(tmp_path / f"out{suffix}", None)) is None


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_create_volume_keeps_it_while_others_fill_the_planes(tmp_path: Path, suffix: str) -> None:
    """Prediction's path: created with the provenance, then filled by Z ranges through `planes_of`
    (a TIFF's data offset still found by tifffile's series, so its planes are mapped for writing)."""
    path = tmp_path / f"work{suffix}"
    create_volume(path, SHAPE, DATA.dtype, VOXEL, (2, 6, 7), provenance=STAMP)
    with planes_of(path) as out:
        out[0:3] = DATA[0:3]
    with planes_of(path) as out:
        out[3:5] = DATA[3:5]
    np.testing.assert_array_equal(open_volume(path)[:], DATA)
    assert read_provenance(path) == STAMP


def test_the_tiff_stays_an_ome_tiff_mapped_plane_by_plane(tmp_path: Path) -> None:
    """tifffile reads it as OME with its voxel size and one contiguous block of planes; the
    provenance is an OME MapAnnotation that Bio-Formats shows as key-value pairs."""
    path = _write(tmp_path / "out.tif", STAMP)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and tif.series[0].kind == "ome" and tif.series[0].dataoffset is not None
        assert "<MapAnnotation" in tif.ome_metadata and 'Namespace="voxseg/provenance"' in tif.ome_metadata
    assert voxel_size(path) == pytest.approx(VOXEL)
    np.testing.assert_array_equal(tifffile.imread(path), DATA)
    np.testing.assert_array_equal(tifffile.memmap(path, mode="r"), DATA)


def test_zarr_and_hdf5_keep_it_where_their_readers_show_it(tmp_path: Path) -> None:
    """Zarr: the image group's attributes under "voxseg"; HDF5: the dataset's "voxseg", one JSON string."""
    group = zarr.open_group(str(_write(tmp_path / "out.zarr", STAMP)), mode="r")
    assert group.attrs["voxseg"] == STAMP and group.attrs["multiscales"][0]["version"] == "0.4"
    with h5py.File(_write(tmp_path / "out.h5", STAMP), "r") as handle:
        assert json.loads(handle["data"].attrs["voxseg"]) == STAMP


def _foreign(folder: Path) -> list[Path]:
    """Files voxseg did not write, some not volumes at all."""
    garbage = b"not an image\x00\x01" * 20
    (folder / "garbage.tif").write_bytes(garbage)
    (folder / "garbage.h5").write_bytes(garbage)
    (folder / "empty.zarr").mkdir()
    (folder / "notes.txt").write_text("hello")
    tifffile.imwrite(folder / "plain.tif", DATA)
    tifffile.imwrite(folder / "plain.ome.tif", DATA, ome=True, metadata={"axes": "ZYX"})
    with h5py.File(folder / "other.h5", "w") as handle:
        handle["raw"] = DATA
        handle["raw"].attrs["voxseg"] = "not JSON"
    zarr.open_group(str(folder / "other.zarr"), mode="w").attrs["voxseg"] = ["not", "a", "dict"]
    return [*sorted(folder.iterdir()), folder / "missing.tif", folder / "missing.zarr"]


def test_files_without_it_or_not_volumes_read_none(tmp_path: Path) -> None:
    for path in _foreign(tmp_path):
        assert read_provenance(path) is None, path
