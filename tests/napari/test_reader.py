"""napari opens HDF5 and Zarr volumes through voxseg, with their voxel size as the layer's scale."""

from __future__ import annotations

from pathlib import Path

import h5py
import npe2
import numpy as np

from voxseg.io.writers import volume_writer
from voxseg.napari.reader import get_reader


def _h5(path: Path, data: np.ndarray, voxel_size: list[float] | None = None) -> Path:
    with h5py.File(path, "w") as handle:
        handle["data"] = data
        if voxel_size is not None:
            handle["data"].attrs["element_size_um"] = voxel_size
    return path


def test_an_hdf5_volume_opens_as_an_image_with_its_voxel_size(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    path = _h5(tmp_path / "nuclei.h5", data, [2.0, 0.5, 0.5])
    ((array, meta, kind),) = get_reader(str(path))(str(path))
    np.testing.assert_array_equal(array, data)
    assert kind == "image" and meta == {"name": "nuclei", "scale": (2.0, 0.5, 0.5)}


def test_predicted_labels_open_as_a_labels_layer(tmp_path: Path) -> None:
    path = tmp_path / "nuclei_labels.zarr"
    with volume_writer(path, (4, 5, 6), np.uint16, False, (1.0, 0.3, 0.3)) as out:
        out[0:4] = np.ones((4, 5, 6), np.uint16)
    ((_, meta, kind),) = get_reader(str(path))(str(path))
    assert kind == "labels" and meta["scale"] == (1.0, 0.3, 0.3)


def test_other_files_are_left_to_other_readers(tmp_path: Path) -> None:
    two = _h5(tmp_path / "two.h5", np.zeros((4, 4, 4)))
    with h5py.File(two, "a") as handle:
        handle["again"] = np.zeros((4, 4, 4))
    assert get_reader(str(two)) is None  # several volumes: voxseg cannot choose
    assert get_reader(str(tmp_path / "a.tif")) is None
    assert get_reader([str(two)]) is None


def test_the_manifest_offers_the_reader_for_hdf5() -> None:
    manager = npe2.PluginManager.instance()
    manager.discover()
    assert "voxseg.get_reader" in [r.command for r in manager.iter_compatible_readers(["/x/a.h5"])]
