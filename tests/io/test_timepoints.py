"""One time point of a time series (a named T axis) read as the Z×Y×X volume, in every format."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from voxseg.errors import DataError
from voxseg.io.formats import open_volume, read_whole
from voxseg.io.stored import layout
from voxseg.io.tiff import TiffVolume

V = np.random.default_rng(0).integers(0, 4000, (5, 6, 7), dtype=np.uint16)
MOVIE = np.stack([V, V[:, ::-1], V])  # T, Z, Y, X: time point 1 differs from 0 and 2


def _imagej_movie(path: Path, compression: str | None = None) -> Path:
    tifffile.imwrite(path, MOVIE, imagej=True, metadata={"axes": "TZYX"}, compression=compression)
    return path


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_a_time_point_of_an_imagej_movie(tmp_path: Path, compression: str | None) -> None:
    """Mapped (uncompressed) and read whole (compressed): the whole volume, a plane and a region."""
    path = _imagej_movie(tmp_path / "movie.tif", compression)
    volume = open_volume(path, timepoint=1)
    assert isinstance(volume, TiffVolume) and volume.mapped == (compression is None)
    assert volume.shape == V.shape
    np.testing.assert_array_equal(volume[:], V[:, ::-1])
    np.testing.assert_array_equal(volume[2], V[2, ::-1])
    np.testing.assert_array_equal(volume[1:4, 2:5, 1:6], V[:, ::-1][1:4, 2:5, 1:6])
    np.testing.assert_array_equal(read_whole(path, timepoint=1), V[:, ::-1])
    np.testing.assert_array_equal(read_whole(path, timepoint=2), V)


def test_without_a_time_point_the_error_says_how_many_and_how_to_pick(tmp_path: Path) -> None:
    path = _imagej_movie(tmp_path / "movie.tif")
    with pytest.raises(DataError) as error:
        open_volume(path)
    assert str(error.value) == (
        f"{path}: 3 time points (axes TZYX, shape (3, 5, 6, 7)); voxseg segments one: "
        "give --timepoint T (0 to 2)"
    )


@pytest.mark.parametrize("timepoint", [3, -1])
def test_a_time_point_out_of_range_names_the_range(tmp_path: Path, timepoint: int) -> None:
    path = _imagej_movie(tmp_path / "movie.tif")
    with pytest.raises(DataError) as error:
        open_volume(path, timepoint=timepoint)
    assert str(error.value) == f"--timepoint {timepoint}: {path} has 3 time points (0 to 2)"


def test_files_with_one_time_point_ignore_it(tmp_path: Path) -> None:
    """A T axis of length 1 (or none) needs no time point, as one channel needs no channel."""
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, MOVIE[:1], imagej=True, metadata={"axes": "TZYX"})
    np.testing.assert_array_equal(open_volume(path)[:], V)
    np.testing.assert_array_equal(open_volume(path, timepoint=2)[:], V)


TCZYX = np.stack([np.stack([V + 10 * t + c for c in range(2)]) for t in range(3)])  # (3, 2, 5, 6, 7)


def _ome_tiff(path: Path) -> Path:
    tifffile.imwrite(path, TCZYX, ome=True, metadata={"axes": "TCZYX"})
    return path


def _imagej_hyperstack(path: Path) -> Path:  # ImageJ's own order is TZCYX
    tifffile.imwrite(path, TCZYX.transpose(0, 2, 1, 3, 4), imagej=True, metadata={"axes": "TZCYX"})
    return path


def _ome_zarr(path: Path) -> Path:
    """NGFF 0.4 with the time axis named "frame": its type makes it the time axis."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", shape=TCZYX.shape, dtype=TCZYX.dtype, chunks=(1, 1, 2, 3, 4))[:] = TCZYX
    axes: list[dict[str, Any]] = [
        {"name": "frame", "type": "time", "unit": "second"},
        {"name": "c", "type": "channel"},
        *({"name": axis, "type": "space", "unit": "micrometer"} for axis in "zyx"),
    ]
    scale = [{"type": "scale", "scale": [1.0, 1.0, 2.0, 0.5, 0.25]}]
    group.attrs["multiscales"] = [
        {"version": "0.4", "axes": axes, "datasets": [{"path": "0", "coordinateTransformations": scale}]}
    ]
    return path


def _ilastik(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("exported_data", data=TCZYX)
        dataset.attrs["axistags"] = json.dumps({"axes": [{"key": key} for key in "tczyx"]})
    return path


@pytest.mark.parametrize(
    ("name", "write"),
    [("v.ome.tif", _ome_tiff), ("v.tif", _imagej_hyperstack), ("v.ome.zarr", _ome_zarr), ("v.h5", _ilastik)],
)
def test_a_channel_of_a_time_point(tmp_path: Path, name: str, write: Callable[[Path], Path]) -> None:
    """Both axes fixed: each (time point, channel) reads its own volume, regions included."""
    path = write(tmp_path / name)
    for t, c in [(0, 1), (2, 0), (1, 1)]:
        volume = open_volume(path, channel=c, timepoint=t)
        assert volume.shape == V.shape
        np.testing.assert_array_equal(volume[:], TCZYX[t, c])
        np.testing.assert_array_equal(volume[1:3, 2:, :4], TCZYX[t, c, 1:3, 2:, :4])
    with pytest.raises(DataError, match="3 time points"):
        open_volume(path, channel=0)
    with pytest.raises(DataError, match="2 channels"):
        open_volume(path, timepoint=0)


def test_an_ome_zarr_time_point_keeps_its_voxel_size_and_stored_axes(tmp_path: Path) -> None:
    """`axes` says where Z, Y and X sit in the stored array (napari's reader scales those), as HDF5's does."""
    volume = open_volume(_ome_zarr(tmp_path / "v.ome.zarr"), channel=0, timepoint=2)
    assert volume.voxel_size == pytest.approx((2.0, 0.5, 0.25))
    assert volume.axes == open_volume(_ilastik(tmp_path / "v.h5"), channel=0, timepoint=2).axes == (2, 3, 4)
    assert volume.stored_array.shape == TCZYX.shape


def test_an_axis_other_than_channel_or_time_is_refused(tmp_path: Path) -> None:
    """Views, angles, tiles: voxseg reads one Z×Y×X volume per file, and says which axis is extra."""
    path = tmp_path / "views.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", shape=(2, *V.shape), dtype=V.dtype)
    axes = [{"name": "view", "type": "space"}, *({"name": axis, "type": "space"} for axis in "zyx")]
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0] * 4}]}]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    with pytest.raises(DataError, match=r"views\.zarr: has VIEW = 2 .* one Z×Y×X volume per file"):
        open_volume(path, timepoint=0)


def test_unnamed_axes_are_never_taken_for_time() -> None:
    """Only a named T axis is time: an unnamed 5D array with two axes besides Z, Y, X is refused."""
    with pytest.raises(DataError, match="not a 3D volume"):
        layout(Path("v.h5"), (3, 2, 5, 6, 7), None, channel=0, timepoint=0)


def test_a_second_channel_axis_is_refused_not_a_traceback() -> None:
    """C and S both longer than 1 (an RGB hyperstack): one channel axis is read, the other refused."""
    with pytest.raises(DataError, match="has S = 3"):
        layout(Path("v.tif"), (5, 2, 6, 7, 3), list("ZCYXS"), channel=0)
