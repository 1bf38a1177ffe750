"""TIFF volumes read by Z ranges (mapped when the file allows, whole otherwise) and written plane by plane."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from voxseg.errors import DataError
from voxseg.io.tiff import TiffVolume, planes_writer, voxel_size


@pytest.mark.parametrize(("compression", "byteorder"), [(None, "<"), (None, ">"), ("zlib", "<")])
def test_ranges_of_planes_read_as_written(tmp_path: Path, compression: str | None, byteorder: str) -> None:
    """Big-endian files too: Fiji writes them by default."""
    volume = np.random.default_rng(0).integers(0, 4000, (9, 20, 30), dtype=np.uint16)
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, volume, compression=compression, byteorder=byteorder)
    read = TiffVolume(path)
    assert read.mapped == (compression is None) and read.shape == volume.shape and read.size == volume.size
    np.testing.assert_array_equal(read[2:7], volume[2:7])
    np.testing.assert_array_equal(read[4], volume[4])
    np.testing.assert_array_equal(read[7:20], volume[7:])
    np.testing.assert_array_equal(read[1:5, 3:9, 10:30], volume[1:5, 3:9, 10:30])


def test_a_2d_file_is_refused_naming_it(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"flat\.tif: not a 3D volume"):
        TiffVolume(tmp_path / "flat.tif")


def test_planes_are_written_in_ranges_and_renamed_into_place(tmp_path: Path) -> None:
    target = tmp_path / "mask.tif"
    with planes_writer(target, (6, 5, 4), np.uint8, overwrite=False) as out:
        out[0:4] = np.ones((4, 5, 4), bool)
        out[4:6] = np.full((2, 5, 4), 7, np.uint8)
        assert not target.exists()  # nobody sees half a volume
    written = tifffile.imread(target)
    assert written.dtype == np.uint8 and written[:4].all() and (written[4:] == 7).all()
    with pytest.raises(DataError, match="already exists"), planes_writer(target, (1, 1, 1), np.uint8, False):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # readable as any new file, not private


def test_three_planes_are_a_stack_not_an_rgb_image(tmp_path: Path) -> None:
    with planes_writer(tmp_path / "m.tif", (3, 5, 4), np.uint8, overwrite=False) as out:
        out[0:3] = np.arange(60, dtype=np.uint8).reshape(3, 5, 4)
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:
        assert tif.series[0].axes[0] != "S" and tif.pages.first.photometric == tifffile.PHOTOMETRIC.MINISBLACK
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "m.tif"), np.arange(60).reshape(3, 5, 4))


def test_voxel_size_from_imagej_metadata(tmp_path: Path) -> None:
    path = tmp_path / "v.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 8, 8), np.uint8),
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.5),
        metadata={"spacing": 2.0, "unit": "um"},
    )
    assert voxel_size(path) == pytest.approx((2.0, 0.5, 0.25))
    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((4, 8, 8), np.uint8))
    assert voxel_size(tmp_path / "plain.tif") is None


def test_voxel_size_in_nanometres_is_given_in_micrometres(tmp_path: Path) -> None:
    path = tmp_path / "nm.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 8, 8), np.uint8),
        imagej=True,
        resolution=(1 / 250, 1 / 500),
        metadata={"spacing": 2000.0, "unit": "nm"},
    )
    assert voxel_size(path) == pytest.approx((2.0, 0.5, 0.25))


def test_single_planes_by_any_integer_and_from_the_end(tmp_path: Path) -> None:
    volume = np.arange(4 * 3 * 2, dtype=np.uint16).reshape(4, 3, 2)
    tifffile.imwrite(tmp_path / "v.tif", volume)
    read = TiffVolume(tmp_path / "v.tif")
    np.testing.assert_array_equal(read[np.int64(2)], volume[2])
    np.testing.assert_array_equal(read[-1], volume[-1])


def test_voxel_size_from_ome_metadata(tmp_path: Path) -> None:
    path = tmp_path / "v.ome.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 8, 8), np.uint8),
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.25,
            "PhysicalSizeY": 0.5,
            "PhysicalSizeZ": 2000.0,
            "PhysicalSizeZUnit": "nm",
        },
    )
    assert voxel_size(path) == pytest.approx((2.0, 0.5, 0.25))
