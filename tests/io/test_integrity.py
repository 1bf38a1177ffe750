"""Damaged files are refused naming the file: cut short at open (from headers only), a chunk or strip
that fails to decode when it is read; whole files of every flavour still open."""

from __future__ import annotations

import gzip
import lzma
import re
import zlib
from pathlib import Path
from typing import Any

import h5py
import numcodecs
import numpy as np
import pytest
import tifffile
import zarr

from voxseg.errors import DataError
from voxseg.io.formats import open_volume

VOLUME = np.random.default_rng(0).integers(0, 4000, (9, 32, 32), dtype=np.uint16)


def _cut(path: Path, fraction: float) -> int:
    """Keep the first `fraction` of the file's bytes (a copy that stopped); the new size."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path.stat().st_size


def _refused_at_open(path: Path, *parts: str) -> str:
    with pytest.raises(DataError) as error:
        open_volume(path)
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


# --- TIFF -----------------------------------------------------------------------------------------

TIFF_FLAVOURS: dict[str, dict[str, Any]] = {
    "imagej": {"imagej": True},
    "imagej-zlib": {"imagej": True, "compression": "zlib"},
    "shaped": {},
    "shaped-zlib": {"compression": "zlib"},
    "ome": {"ome": True, "metadata": {"axes": "ZYX", "PhysicalSizeZ": 2.0}},
    "ome-zlib": {"ome": True, "compression": "zlib", "metadata": {"axes": "ZYX"}},
    "tiled-zlib": {"tile": (16, 16), "compression": "zlib"},
    "strips-zlib": {"rowsperstrip": 8, "compression": "zlib"},
    "bigtiff": {"bigtiff": True},
    "big-endian": {"byteorder": ">"},
}


@pytest.mark.parametrize("flavour", sorted(TIFF_FLAVOURS))
def test_whole_tiffs_of_every_flavour_open_and_read(tmp_path: Path, flavour: str) -> None:
    """The checks refuse no whole file: their headers and data lie within the file."""
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, VOLUME, **TIFF_FLAVOURS[flavour])
    np.testing.assert_array_equal(open_volume(path)[:], VOLUME)


def test_a_truncated_zlib_imagej_tiff_is_refused_at_open(tmp_path: Path) -> None:
    """The case that failed mid-prediction with DeflateError: cut to 60%, refused before any read,
    naming the size of the file and more bytes than it has that its pages need."""
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, VOLUME, imagej=True, compression="zlib")
    size = _cut(path, 0.6)
    message = _refused_at_open(path, f"cut short: the file is {size} bytes", "(copy it again?)")
    found = re.search(r"its (image data needs|page headers need at least) (\d+)", message)
    assert found and int(found[2]) > size, message


def test_a_cut_in_the_last_strip_names_the_bytes_the_image_data_needs(tmp_path: Path) -> None:
    """Every page header whole, the last strip (at the end of the file) cut by 10 bytes."""
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, VOLUME, imagej=True, compression="zlib")
    whole = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-10])
    _refused_at_open(path, f"cut short: the file is {whole - 10} bytes, its image data needs {whole}")


@pytest.mark.parametrize("flavour", ["imagej", "shaped", "ome", "bigtiff", "big-endian"])
def test_a_truncated_uncompressed_tiff_is_refused_at_open(tmp_path: Path, flavour: str) -> None:
    """The mapped block must fit: a file cut within its planes says how many bytes they need."""
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, VOLUME, **TIFF_FLAVOURS[flavour])
    with tifffile.TiffFile(path) as tif:
        end = tif.series[0].dataoffset + tif.series[0].nbytes
    size = _cut(path, 0.6)
    assert size < end
    _refused_at_open(path, f"cut short: the file is {size} bytes")


@pytest.mark.parametrize("flavour", sorted(TIFF_FLAVOURS))
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8, 0.97, 0.995])
def test_no_cut_is_read_as_another_image(tmp_path: Path, flavour: str, fraction: float) -> None:
    """tifffile drops pages or metadata past the end and opens what is left as another image (one
    plane, fewer planes, no voxel size): every cut is refused at open, or reads the whole volume."""
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, VOLUME, **TIFF_FLAVOURS[flavour])
    expected_size = open_volume(path).voxel_size
    _cut(path, fraction)
    try:
        volume = open_volume(path)
    except DataError as error:
        assert str(error).startswith(f"{path}: "), error
        return
    np.testing.assert_array_equal(volume[:], VOLUME)
    assert volume.voxel_size == expected_size


def test_a_damaged_strip_raises_a_data_error_when_read(tmp_path: Path) -> None:
    """Same size, garbage bytes: only decoding finds it. imagecodecs' DeflateError is a RuntimeError
    (zlib.error without imagecodecs), neither of which tifffile's readers used to catch."""
    path = tmp_path / "bad.tif"
    tifffile.imwrite(path, VOLUME, compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[4].dataoffsets[0], tif.pages[4].databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\xff" * count
    path.write_bytes(bytes(data))
    volume = open_volume(path)  # the headers are whole
    with pytest.raises(DataError, match=r"bad\.tif: cannot read as TIFF \((DeflateError|error)"):
        volume[3:6]


# --- HDF5 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
def test_a_truncated_hdf5_is_a_data_error_saying_so(tmp_path: Path, fraction: float) -> None:
    """HDF5 compares the file's size with its superblock's at open: a DataError, not h5py's OSError."""
    path = tmp_path / "cut.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("raw", data=VOLUME, chunks=(2, 16, 16), compression="gzip")
    whole = path.stat().st_size
    size = _cut(path, fraction)
    _refused_at_open(path, f"cut short: the file is {size} bytes, its data needs {whole}")


def test_a_damaged_hdf5_chunk_raises_a_data_error_when_read(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("raw", data=VOLUME, chunks=(2, 16, 16), compression="gzip")
    with h5py.File(path, "r") as handle:
        chunk = handle["raw"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset : chunk.byte_offset + chunk.size] = b"\xff" * chunk.size
    path.write_bytes(bytes(data))
    volume = open_volume(path)
    np.testing.assert_array_equal(volume[4:6], VOLUME[4:6])  # other chunks read
    with pytest.raises(DataError, match=r"bad\.h5: cannot read"):
        volume[0:2]


# --- Zarr -----------------------------------------------------------------------------------------

ZARR_CODECS: dict[str, dict[str, Any]] = {
    "v2-default": {"zarr_format": 2},  # Zstd: RuntimeError
    "v3-default": {"zarr_format": 3},
    "v2-zlib": {"zarr_format": 2, "compressors": numcodecs.Zlib()},  # zlib.error
    "v2-gzip": {"zarr_format": 2, "compressors": numcodecs.GZip()},  # EOFError when cut
    "v2-lzma": {"zarr_format": 2, "compressors": numcodecs.LZMA()},  # lzma.LZMAError
    "v2-raw": {"zarr_format": 2, "compressors": None},  # ValueError: the wrong number of bytes
}


def _zarr_with_a_damaged_chunk(path: Path, options: dict[str, Any]) -> Path:
    """A Zarr array whose first chunk file is cut to half."""
    array = zarr.create_array(
        str(path), shape=VOLUME.shape, dtype=VOLUME.dtype, chunks=(2, 16, 16), **options
    )
    array[:] = VOLUME
    chunk = next(f for f in sorted(path.rglob("*")) if f.is_file() and not f.name.startswith((".z", "zarr.")))
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    return path


@pytest.mark.parametrize("codec", sorted(ZARR_CODECS))
def test_a_damaged_zarr_chunk_raises_a_data_error_when_read(tmp_path: Path, codec: str) -> None:
    """Chunks are read lazily: the store opens, the damaged chunk's read names the file, whatever
    exception type the codec raises (some subclass neither OSError nor ValueError)."""
    path = _zarr_with_a_damaged_chunk(tmp_path / "bad.zarr", ZARR_CODECS[codec])
    volume = open_volume(path)
    np.testing.assert_array_equal(volume[4:6], VOLUME[4:6])
    with pytest.raises(DataError, match=r"bad\.zarr: cannot read"):
        volume[0:2]


def test_the_codec_exceptions_subclass_none_of_the_usual_types() -> None:
    """Why READ_ERRORS names them: without them a damaged chunk ends a run with a traceback."""
    for error in (zlib.error, lzma.LZMAError, EOFError):
        assert not issubclass(error, (OSError, ValueError, RuntimeError))
    with pytest.raises(EOFError):
        gzip.decompress(gzip.compress(b"data")[:-10])


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_with_missing_or_damaged_metadata(tmp_path: Path, fmt: int) -> None:
    """No metadata at all, and a member whose metadata is not JSON: DataError naming the store."""
    meta = ".zarray" if fmt == 2 else "zarr.json"
    bare = tmp_path / "bare.zarr"
    zarr.create_array(str(bare), shape=VOLUME.shape, dtype=VOLUME.dtype, zarr_format=fmt)
    (bare / meta).unlink()
    _refused_at_open(bare, "cannot read as Zarr")
    group = tmp_path / "group.zarr"
    zarr.open_group(str(group), mode="w", zarr_format=fmt).create_array("raw", shape=VOLUME.shape, dtype="u2")
    (group / "raw" / meta).write_text("{")
    _refused_at_open(group, "damaged Zarr metadata")
