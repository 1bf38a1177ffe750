"""New volumes written by Z ranges in the family their suffix names, atomically, refusing to overwrite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from voxseg.errors import DataError
from voxseg.io.formats import open_volume
from voxseg.io.writers import volume_writer

SHAPE = (5, 6, 7)
VOXEL = (2.0, 0.5, 0.25)
SUFFIXES = [".tif", ".zarr", ".h5"]


def _data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 60000, SHAPE).astype(np.uint16)


def _write(path: Path, data: np.ndarray, overwrite: bool = False) -> None:
    """Two Z ranges, as prediction writes slabs."""
    with volume_writer(path, SHAPE, data.dtype, overwrite, VOXEL) as out:
        out[0:2] = data[0:2]
        out[2:5] = data[2:5]


def _listing(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_written_volume_reads_back_with_its_voxel_size(tmp_path: Path, suffix: str) -> None:
    """open_volume gives back the data, pixel type and voxel size; only the target is left in the folder."""
    target, data = tmp_path / f"out{suffix}", _data()
    _write(target, data)
    volume = open_volume(target)
    assert volume.shape == SHAPE and volume.dtype == np.uint16
    np.testing.assert_array_equal(volume[:], data)
    assert volume.voxel_size == pytest.approx(VOXEL)
    assert _listing(tmp_path) == [target.name]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_target_is_invisible_until_the_block_ends(tmp_path: Path, suffix: str) -> None:
    """A reader never sees half a volume: the temporary is hidden and the target appears at the end."""
    target, data = tmp_path / f"out{suffix}", _data()
    with volume_writer(target, SHAPE, data.dtype, False, VOXEL) as out:
        out[0:5] = data
        assert not target.exists()
        assert all(name.startswith(".") for name in _listing(tmp_path))
    assert target.exists()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_written_volume_has_the_permissions_of_any_new_entry(tmp_path: Path, suffix: str) -> None:
    """Not the private mode of mkstemp/mkdtemp: others can read the outputs as they could any file."""
    target = tmp_path / f"out{suffix}"
    _write(target, _data())
    umask = os.umask(0)
    os.umask(umask)
    expected = (0o777 if target.is_dir() else 0o666) & ~umask
    assert target.stat().st_mode & 0o777 == expected


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_an_existing_target_is_refused_unless_overwrite(tmp_path: Path, suffix: str) -> None:
    target, old, new = tmp_path / f"out{suffix}", _data(0), _data(1)
    _write(target, old)
    with pytest.raises(DataError, match="already exists") as error:
        _write(target, new)
    assert str(target) in str(error.value)
    np.testing.assert_array_equal(open_volume(target)[:], old)
    assert _listing(tmp_path) == [target.name]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_overwrite_replaces_the_target(tmp_path: Path, suffix: str) -> None:
    """The new volume replaces the old one whole: nothing of a Zarr store's old content is left."""
    target, old, new = tmp_path / f"out{suffix}", _data(0), _data(1)
    _write(target, old)
    if target.is_dir():
        (target / "planted.txt").write_text("from the old store")
    _write(target, new, overwrite=True)
    np.testing.assert_array_equal(open_volume(target)[:], new)
    assert open_volume(target).voxel_size == pytest.approx(VOXEL)
    if target.is_dir():
        assert not (target / "planted.txt").exists()
    assert _listing(tmp_path) == [target.name]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_failure_in_the_block_leaves_nothing(tmp_path: Path, suffix: str) -> None:
    """No target and no temporary after an exception; the exception itself propagates."""
    target = tmp_path / f"out{suffix}"
    with (
        pytest.raises(RuntimeError, match="interrupted"),
        volume_writer(target, SHAPE, np.uint16, False) as out,
    ):
        out[0:2] = _data()[0:2]
        raise RuntimeError("interrupted")
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_failed_overwrite_keeps_the_old_target(tmp_path: Path, suffix: str) -> None:
    target, old = tmp_path / f"out{suffix}", _data(0)
    _write(target, old)
    with pytest.raises(RuntimeError), volume_writer(target, SHAPE, np.uint16, True, VOXEL) as out:
        out[0:2] = _data(1)[0:2]
        raise RuntimeError("interrupted")
    np.testing.assert_array_equal(open_volume(target)[:], old)
    assert _listing(tmp_path) == [target.name]


def test_an_unknown_suffix_is_refused(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="suffix"),
        volume_writer(tmp_path / "out.png", SHAPE, np.uint8, False),
    ):
        pass
    assert _listing(tmp_path) == []


def test_ome_zarr_output_opens_with_plain_zarr(tmp_path: Path) -> None:
    """NGFF 0.4: array "0" and `multiscales` with z, y, x in micrometer and the voxel size as the scale."""
    target, data = tmp_path / "out.zarr", _data()
    _write(target, data)
    group = zarr.open(str(target), mode="r")
    np.testing.assert_array_equal(group["0"][:], data)
    (multiscale,) = group.attrs["multiscales"]
    assert multiscale["version"] == "0.4"
    assert [(a["name"], a["type"], a["unit"]) for a in multiscale["axes"]] == [
        (axis, "space", "micrometer") for axis in "zyx"
    ]
    (dataset,) = multiscale["datasets"]
    assert dataset["path"] == "0"
    assert dataset["coordinateTransformations"] == [{"type": "scale", "scale": list(VOXEL)}]
    assert (target / ".zgroup").is_file()  # Zarr format 2: what zarr 2 readers open too
