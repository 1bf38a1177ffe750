"""One reading layer for TIFF, Zarr/OME-Zarr and HDF5: names, region reads, voxel sizes, levels and errors."""

from __future__ import annotations

import json
import multiprocessing
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from voxseg.errors import DataError
from voxseg.io.formats import VolumeFile, family, is_volume, open_volume, read_whole, stem, suffix
from voxseg.io.hdf5_volume import Hdf5Volume
from voxseg.io.zarr_volume import ZarrVolume

SHAPE = (5, 6, 7)


def _data(dtype: type = np.uint16, shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, shape).astype(dtype)


def _write_tiff(path: Path, data: np.ndarray) -> Path:
    tifffile.imwrite(path, data)
    return path


def _write_zarr(path: Path, data: np.ndarray) -> Path:
    array = zarr.open_array(str(path), mode="w", shape=data.shape, dtype=data.dtype, chunks=(2, 3, 4))
    array[:] = data
    return path


def _write_hdf5(path: Path, data: np.ndarray) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("raw", data=data, chunks=(2, 3, 4))
    return path


WRITERS: dict[str, tuple[str, Callable[[Path, np.ndarray], Path]]] = {
    "tiff": ("v.tif", _write_tiff),
    "zarr": ("v.zarr", _write_zarr),
    "hdf5": ("v.h5", _write_hdf5),
}


def _ome_zarr(
    path: Path,
    levels: list[np.ndarray],
    axes: list[dict[str, Any]],
    scales: list[list[float]],
    global_scale: list[float] | None = None,
    version: str = "0.4",
) -> Path:
    """An OME-Zarr image: 0.4 keeps `multiscales` at the top of the attributes (Zarr 2), 0.5 under
    "ome" (Zarr 3)."""
    group = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    datasets = []
    for index, (level, scale) in enumerate(zip(levels, scales, strict=True)):
        group.create_array(str(index), shape=level.shape, dtype=level.dtype)[:] = level
        datasets.append(
            {"path": str(index), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    multiscale: dict[str, Any] = {"axes": axes, "datasets": datasets}
    if global_scale is not None:
        multiscale["coordinateTransformations"] = [{"type": "scale", "scale": global_scale}]
    if version == "0.4":
        group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    return path


def _space(names: str, unit: str = "micrometer") -> list[dict[str, Any]]:
    return [{"name": name, "type": "space", "unit": unit} for name in names]


TCZYX_NM = [
    {"name": "t", "type": "time", "unit": "second"},
    {"name": "c", "type": "channel"},
    *_space("zyx", "nanometer"),
]


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected_suffix", "expected_family", "expected_stem"),
    [
        ("a.ome.tif", ".ome.tif", "tiff", "a"),
        ("a.ome.tiff", ".ome.tiff", "tiff", "a"),
        ("a.TIFF", ".tiff", "tiff", "a"),
        ("b.zarr", ".zarr", "zarr", "b"),
        ("b.ome.zarr", ".ome.zarr", "zarr", "b"),
        ("c.h5", ".h5", "hdf5", "c"),
        ("d.hdf5", ".hdf5", "hdf5", "d"),
        ("e.txt", None, None, "e.txt"),
        (".tif", None, None, ".tif"),
    ],
)
def test_suffix_family_and_stem(
    name: str, expected_suffix: str | None, expected_family: str | None, expected_stem: str
) -> None:
    """The longest known ending names the format and is cut from the stem; a bare suffix is no name."""
    assert suffix(Path(name)) == expected_suffix
    assert family(Path(name)) == expected_family
    assert stem(Path(name)) == expected_stem


def test_is_volume_needs_the_right_kind_of_entry(tmp_path: Path) -> None:
    """TIFF/HDF5 are files and Zarr stores are folders; hidden entries and other names are no volumes."""
    for name in ("a.ome.tif", "a.TIFF", "c.h5", "d.hdf5", ".x.tif", "e.txt", "f.zarr"):
        (tmp_path / name).write_bytes(b"")
    for name in ("b.zarr", "g.tif", ".h.zarr"):
        (tmp_path / name).mkdir()
    found = sorted(entry.name for entry in tmp_path.iterdir() if is_volume(entry))
    assert found == ["a.TIFF", "a.ome.tif", "b.zarr", "c.h5", "d.hdf5"]


# --- the same data from every format ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_every_format_reads_the_same_regions(tmp_path: Path, kind: str, dtype: type) -> None:
    """Shape, pixel type, a plane, a Z×Y region and the whole volume match what was written."""
    name, write = WRITERS[kind]
    data = _data(dtype)
    volume = open_volume(write(tmp_path / name, data))
    assert volume.shape == SHAPE and volume.dtype == np.dtype(dtype) and volume.size == data.size
    assert volume.voxel_size is None
    np.testing.assert_array_equal(volume[1], data[1])
    np.testing.assert_array_equal(volume[1:3, 2:4], data[1:3, 2:4])
    np.testing.assert_array_equal(volume[1:3, 2:4, 5:7], data[1:3, 2:4, 5:7])
    np.testing.assert_array_equal(volume[:], data)
    whole = read_whole(tmp_path / name)
    assert whole.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(whole, data)


def test_a_4d_hdf5_dataset_reads_as_zyx(tmp_path: Path) -> None:
    """A (1, Z, Y, X) dataset (a 1-channel export) drops its length-1 axis."""
    data = _data()
    with h5py.File(tmp_path / "v.h5", "w") as handle:
        handle.create_dataset("data", data=data[None])
    volume = open_volume(tmp_path / "v.h5")
    assert volume.shape == SHAPE
    np.testing.assert_array_equal(volume[2], data[2])
    np.testing.assert_array_equal(volume[1:3, 2:4], data[1:3, 2:4])
    np.testing.assert_array_equal(volume[:], data)


def test_a_5d_ome_zarr_reads_as_zyx(tmp_path: Path) -> None:
    """A (T=1, C=1, Z, Y, X) OME-Zarr image is read by its named spatial axes."""
    data = _data()
    path = _ome_zarr(tmp_path / "v.ome.zarr", [data[None, None]], TCZYX_NM, [[1, 1, 1, 1, 1]])
    volume = open_volume(path)
    assert volume.shape == SHAPE
    np.testing.assert_array_equal(volume[2], data[2])
    np.testing.assert_array_equal(volume[1:3, 2:4], data[1:3, 2:4])
    np.testing.assert_array_equal(volume[:], data)


# --- voxel sizes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "factor"), [("um", 1.0), ("nm", 1000.0)])
def test_voxel_size_of_an_imagej_tiff(tmp_path: Path, unit: str, factor: float) -> None:
    """Z from ImageJ's spacing, Y and X from the resolution tags, in the file's unit."""
    path = tmp_path / "v.tif"
    tifffile.imwrite(
        path,
        _data(),
        imagej=True,
        resolution=(1 / (0.25 * factor), 1 / (0.5 * factor)),
        metadata={"spacing": 2.0 * factor, "unit": unit},
    )
    assert open_volume(path).voxel_size == pytest.approx((2.0, 0.5, 0.25))


def test_voxel_size_of_an_ome_tiff(tmp_path: Path) -> None:
    path = tmp_path / "v.ome.tif"
    tifffile.imwrite(
        path,
        _data(),
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0},
    )
    assert open_volume(path).voxel_size == pytest.approx((2.0, 0.5, 0.25))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_voxel_size_of_an_ome_zarr(tmp_path: Path, version: str) -> None:
    """The dataset's scale times the multiscale's, over t and c axes of length 1, nanometres as µm."""
    path = _ome_zarr(
        tmp_path / "v.ome.zarr",
        [_data(shape=(1, 1, *SHAPE))],
        TCZYX_NM,
        [[1.0, 1.0, 1000.0, 250.0, 125.0]],
        global_scale=[60.0, 1.0, 2.0, 2.0, 2.0],
        version=version,
    )
    volume = open_volume(path)
    assert volume.shape == SHAPE
    assert volume.voxel_size == pytest.approx((2.0, 0.5, 0.25))


def test_voxel_size_of_a_plain_zarr_array(tmp_path: Path) -> None:
    path = _write_zarr(tmp_path / "v.zarr", _data())
    zarr.open_array(str(path), mode="r+").attrs["element_size_um"] = [2.0, 0.5, 0.25]
    assert open_volume(path).voxel_size == pytest.approx((2.0, 0.5, 0.25))


def test_voxel_size_of_an_hdf5_dataset(tmp_path: Path) -> None:
    path = _write_hdf5(tmp_path / "v.h5", _data())
    with h5py.File(path, "a") as handle:
        handle["raw"].attrs["element_size_um"] = np.array([2.0, 0.5, 0.25])
    assert open_volume(path).voxel_size == pytest.approx((2.0, 0.5, 0.25))


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_no_metadata_means_no_voxel_size(tmp_path: Path, kind: str) -> None:
    name, write = WRITERS[kind]
    assert open_volume(write(tmp_path / name, _data())).voxel_size is None


# --- OME-Zarr levels ----------------------------------------------------------------------------


def _two_levels(path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    full = _data(shape=(4, 8, 8))
    half = full[:, ::2, ::2].copy()
    _ome_zarr(path, [full, half], _space("zyx"), [[2.0, 0.5, 0.5], [2.0, 1.0, 1.0]])
    return path, full, half


def test_a_level_has_its_own_shape_and_voxel_size(tmp_path: Path) -> None:
    path, full, half = _two_levels(tmp_path / "v.ome.zarr")
    level0, level1 = open_volume(path), open_volume(path, level=1)
    assert level0.shape == (4, 8, 8) and level0.voxel_size == pytest.approx((2.0, 0.5, 0.5))
    assert level1.shape == (4, 4, 4) and level1.voxel_size == pytest.approx((2.0, 1.0, 1.0))
    np.testing.assert_array_equal(level1[:], half)
    np.testing.assert_array_equal(read_whole(path, level=1), half)


def test_a_missing_level_names_the_file_and_the_levels(tmp_path: Path) -> None:
    path, _, _ = _two_levels(tmp_path / "v.ome.zarr")
    with pytest.raises(DataError, match="levels are 0 to 1") as error:
        open_volume(path, level=2)
    assert str(path) in str(error.value) and "level 2" in str(error.value)


@pytest.mark.parametrize("kind", ["tiff", "hdf5"])
def test_a_level_of_a_tiff_or_hdf5_is_refused(tmp_path: Path, kind: str) -> None:
    name, write = WRITERS[kind]
    path = write(tmp_path / name, _data())
    with pytest.raises(DataError, match="level 1") as error:
        open_volume(path, level=1)
    assert str(path) in str(error.value)


# --- errors name the file -----------------------------------------------------------------------


def _raises_naming(path: Path, *parts: str, key: str | None = None) -> str:
    """open_volume(path, key) raises DataError whose message names `path` and contains every part."""
    with pytest.raises(DataError) as error:
        open_volume(path, key)
    message = str(error.value)
    assert str(path) in message, message
    for part in parts:
        assert part in message, message
    return message


def test_hdf5_with_two_volumes_asks_for_a_key(tmp_path: Path) -> None:
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as handle:
        handle["raw"] = _data()
        handle["group/label"] = _data()
    _raises_naming(path, "raw", "group/label", "--image-key")
    np.testing.assert_array_equal(open_volume(path, "group/label")[:], _data())
    np.testing.assert_array_equal(open_volume(path, "/raw")[1], _data()[1])


def test_hdf5_unknown_key_lists_the_datasets(tmp_path: Path) -> None:
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as handle:
        handle["raw"] = _data()
        handle["mask2d"] = np.zeros((4, 4), np.uint8)
    _raises_naming(path, "'nope'", "raw", "mask2d", key="nope")


def test_hdf5_key_of_a_2d_dataset_is_not_a_volume(tmp_path: Path) -> None:
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as handle:
        handle["raw"] = _data()
        handle["mask2d"] = np.zeros((4, 4), np.uint8)
    _raises_naming(path, "not a 3D volume", key="mask2d")


def test_zarr_group_with_several_arrays_asks_for_a_key(tmp_path: Path) -> None:
    path = tmp_path / "v.zarr"
    group = zarr.open_group(str(path), mode="w")
    group.create_array("raw", shape=SHAPE, dtype=np.uint16)
    group.create_array("labels", shape=SHAPE, dtype=np.uint16)
    _raises_naming(path, "raw", "labels", "--image-key")
    assert open_volume(path, "labels").shape == SHAPE


def test_zarr_group_without_a_3d_array(tmp_path: Path) -> None:
    path = tmp_path / "v.zarr"
    zarr.open_group(str(path), mode="w").create_array("flat", shape=(4, 4), dtype=np.uint8)
    _raises_naming(path, "3 or more dimensions")


def test_ome_zarr_with_two_channels(tmp_path: Path) -> None:
    path = _ome_zarr(
        tmp_path / "v.ome.zarr", [_data(shape=(2, *SHAPE))], [{"name": "c"}, *_space("zyx")], [[1] * 4]
    )
    _raises_naming(path, "2 channels on axis 0", "--channel N (0 to 1)")


# --- channels -------------------------------------------------------------------------------------

ZCYX = (5, 2, 6, 7)


def _hyperstack(path: Path, data: np.ndarray) -> Path:
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})  # what Fiji saves
    return path


def _ome_channels(path: Path, data: np.ndarray) -> Path:
    axes = [_space("z")[0], {"name": "c", "type": "channel"}, *_space("yx")]
    return _ome_zarr(path, [data], axes, [[1.0] * 4])


def _ilastik(path: Path, data: np.ndarray) -> Path:
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("exported_data", data=data)
        axes = [{"key": key, "typeFlags": 0} for key in "zcyx"]
        dataset.attrs["axistags"] = json.dumps({"axes": axes})
    return path


def _unnamed_hdf5(path: Path, data: np.ndarray) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("raw", data=data)
    return path


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("v.tif", _hyperstack),
        ("v.ome.zarr", _ome_channels),
        ("v.h5", _ilastik),
        ("unnamed.h5", _unnamed_hdf5),  # no axis names: the shortest axis before Y and X
    ],
)
def test_a_multichannel_image_names_its_channels_and_reads_the_one_asked(
    tmp_path: Path, name: str, write: Callable[[Path, np.ndarray], Path]
) -> None:
    data = _data(np.uint16, ZCYX)
    path = write(tmp_path / name, data)
    message = _raises_naming(path, "2 channels on axis 1", "give --channel N (0 to 1)")
    assert "(51" not in message
    for channel in (0, 1):
        volume = open_volume(path, channel=channel)
        assert volume.shape == (5, 6, 7)
        np.testing.assert_array_equal(volume[:], data[:, channel])
        np.testing.assert_array_equal(volume[1:3, 2:, :4], data[1:3, channel, 2:, :4])
        np.testing.assert_array_equal(volume[4], data[4, channel])
    with pytest.raises(DataError, match=r"--channel 2: .* has 2 channels \(0 to 1\)"):
        open_volume(path, channel=2)


def test_a_single_channel_file_ignores_channel(tmp_path: Path) -> None:
    data = _data()
    path = _write_tiff(tmp_path / "v.tif", data)
    np.testing.assert_array_equal(open_volume(path, channel=1)[:], data)


@pytest.mark.parametrize("name", ["garbage.tif", "garbage.h5"])
def test_a_file_that_is_not_its_format(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"this is not an image\x00\x01\x02" * 20)
    _raises_naming(path, "cannot read")


def test_an_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "v.png"
    path.write_bytes(b"")
    _raises_naming(path, "not a volume")


# --- pickling and forked loader workers -----------------------------------------------------------

_INHERITED: list[VolumeFile] = []


def _read_region(volume: VolumeFile) -> np.ndarray:
    """In the worker: a region of a volume that arrived pickled."""
    return volume[1:3, 2:4]


def _read_inherited(index: int) -> np.ndarray:
    """In the worker: a region of a volume inherited through fork, as a DataLoader worker's dataset is."""
    return _INHERITED[index][1:3, 2:4]


@pytest.mark.parametrize(
    ("name", "write", "cls"), [("v.h5", _write_hdf5, Hdf5Volume), ("v.zarr", _write_zarr, ZarrVolume)]
)
def test_volumes_pickle_and_read_in_a_forked_worker(
    tmp_path: Path, name: str, write: Callable[[Path, np.ndarray], Path], cls: type
) -> None:
    """The open handle is not carried across pickling or fork: each process reopens the file."""
    data = _data()
    volume = open_volume(write(tmp_path / name, data))
    assert isinstance(volume, cls)
    np.testing.assert_array_equal(volume[0], data[0])  # the parent has its handle open
    copy = pickle.loads(pickle.dumps(volume))
    assert copy.shape == SHAPE
    np.testing.assert_array_equal(copy[1:3, 2:4], data[1:3, 2:4])
    _INHERITED[:] = [volume]
    try:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            pickled = pool.map_async(_read_region, [volume]).get(timeout=60)
            inherited = pool.map_async(_read_inherited, [0]).get(timeout=60)
    finally:
        _INHERITED.clear()
    np.testing.assert_array_equal(pickled[0], data[1:3, 2:4])
    np.testing.assert_array_equal(inherited[0], data[1:3, 2:4])
    np.testing.assert_array_equal(volume[1:3, 2:4], data[1:3, 2:4])  # and the parent still reads


# -- review findings: axis order, malformed metadata, failing reads ----------------------------------


def test_ome_zarr_axes_in_another_order_read_as_z_y_x(tmp_path: Path) -> None:
    """NGFF allows any order of the space axes: an X, Y, Z array reads transposed into Z×Y×X, its
    voxel size attached to the right axes."""
    data = _data()  # Z×Y×X
    stored = np.ascontiguousarray(data.transpose(2, 1, 0))
    path = _ome_zarr(tmp_path / "xyz.zarr", [stored], _space("xyz"), [[0.25, 0.5, 2.0]])
    volume = open_volume(path)
    assert volume.shape == data.shape and volume.voxel_size == (2.0, 0.5, 0.25)
    np.testing.assert_array_equal(volume[:], data)
    np.testing.assert_array_equal(volume[1], data[1])
    np.testing.assert_array_equal(volume[1:3, 2:4], data[1:3, 2:4])


@pytest.mark.parametrize(
    "broken",
    [
        lambda m: m["datasets"][0].pop("path"),
        lambda m: m["datasets"][0].update(path="missing"),
        lambda m: m.update(datasets={"path": "0"}),
    ],
)
def test_malformed_ome_metadata_is_a_data_error(tmp_path: Path, broken: Callable[[dict], Any]) -> None:
    path = _ome_zarr(tmp_path / "bad.zarr", [_data()], _space("zyx"), [[1.0, 1.0, 1.0]])
    group = zarr.open_group(str(path), mode="a")
    multiscales = group.attrs["multiscales"]
    broken(multiscales[0])
    group.attrs["multiscales"] = multiscales
    _raises_naming(path)


def test_a_truncated_tiff_is_refused_when_opened(tmp_path: Path) -> None:
    """A TIFF cut in half (its first header intact) is refused before any plane is read."""
    path = _write_tiff(tmp_path / "cut.tif", _data())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _raises_naming(path, "cut short")


def test_hdf5_voxel_size_per_stored_axis(tmp_path: Path) -> None:
    """ilastik writes `element_size_um` with a value per axis, the channel's included."""
    path = tmp_path / "zyxc.h5"
    with h5py.File(path, "w") as handle:
        handle["data"] = _data()[..., None]
        handle["data"].attrs["element_size_um"] = [2.0, 0.5, 0.25, 1.0]
    assert open_volume(path).voxel_size == (2.0, 0.5, 0.25)
