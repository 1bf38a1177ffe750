"""One reading layer for every volume format voxseg accepts, used by training, prediction, evaluation
and napari alike.

* TIFF, BigTIFF, OME-TIFF and ImageJ hyperstacks (`voxseg.io.tiff`, tifffile);
* Zarr arrays and OME-Zarr images, at a chosen multiscale level (`voxseg.io.zarr_volume`);
* HDF5 datasets, the file's only volume or the one named by a key (`voxseg.io.hdf5_volume`).

Every volume answers the same questions (shape, pixel type, voxel size) and is read by regions, so
patches and windows are cut without loading a large Zarr or HDF5 volume whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from voxseg.errors import DataError
from voxseg.io.stored import Spacing

Family = Literal["tiff", "zarr", "hdf5"]

#: file name endings by format; the longest match names the stem (`a.ome.tif` -> `a`)
SUFFIXES: dict[str, Family] = {
    ".ome.tiff": "tiff",
    ".ome.tif": "tiff",
    ".tiff": "tiff",
    ".tif": "tiff",
    ".ome.zarr": "zarr",
    ".zarr": "zarr",
    ".hdf5": "hdf5",
    ".h5": "hdf5",
}
#: what a folder listing says it looked for
DESCRIPTION = ".tif/.tiff, .zarr or .h5/.hdf5"
#: the suffix each family's outputs are written with
OUTPUT_SUFFIX: dict[Family, str] = {"tiff": ".tif", "zarr": ".zarr", "hdf5": ".h5"}


class VolumeFile(Protocol):
    """A Z×Y×X volume on disk, read by regions."""

    path: Path
    shape: tuple[int, int, int]
    dtype: np.dtype
    #: (Z, Y, X) in µm from the file's metadata, None when it has none
    voxel_size: Spacing | None
    #: whether regions are read from disk without loading the whole volume
    lazy: bool

    @property
    def size(self) -> int: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


def suffix(path: Path) -> str | None:
    """The volume suffix `path` ends with (lower case, longest first), None when it is no volume name."""
    name = path.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s) and len(name) > len(s)), None)


def family(path: Path) -> Family | None:
    found = suffix(path)
    return None if found is None else SUFFIXES[found]


def stem(path: Path) -> str:
    """The name without its volume suffix: `a.ome.tif`, `a.zarr` and `a.h5` are all `a`."""
    found = suffix(path)
    return path.name[: -len(found)] if found else path.name


def is_volume(path: Path) -> bool:
    """A TIFF or HDF5 file, or a Zarr folder; hidden entries (temporary outputs) are not volumes."""
    kind = family(path)
    if kind is None or path.name.startswith("."):
        return False
    return path.is_dir() if kind == "zarr" else path.is_file()


def open_volume(
    path: Path,
    key: str | None = None,
    level: int = 0,
    channel: int | None = None,
    timepoint: int | None = None,
    series: int | None = None,
) -> VolumeFile:
    """Open `path` for region reads; `key` names the dataset in an HDF5 file or Zarr group, `level`
    the multiscale level of an OME-Zarr image (0 = full resolution), `channel` the channel of a
    multichannel image, `timepoint` the time point of a time series and `series` the image of a TIFF
    holding several (files with one channel, time point or image ignore them). A file cut short or
    unreadable raises DataError naming it here, before any work on it starts; a chunk that fails to
    decode, when it is read."""
    path = Path(path)
    kind = family(path)
    if kind == "tiff":
        from voxseg.io.tiff import TiffVolume

        if level:
            raise DataError(f"{path}: has no multiscale level {level} (levels are read from OME-Zarr)")
        return TiffVolume(path, channel, timepoint, series)
    if kind == "zarr":
        from voxseg.io.zarr_volume import ZarrVolume

        return ZarrVolume(path, key, level, channel, timepoint)
    if kind == "hdf5":
        from voxseg.io.hdf5_volume import Hdf5Volume

        if level:
            raise DataError(f"{path}: has no multiscale level {level} (levels are read from OME-Zarr)")
        return Hdf5Volume(path, key, channel, timepoint)
    raise DataError(f"{path}: not a volume voxseg reads ({DESCRIPTION})")


def read_whole(
    path: Path,
    key: str | None = None,
    level: int = 0,
    channel: int | None = None,
    timepoint: int | None = None,
    series: int | None = None,
) -> np.ndarray:
    """The whole volume in memory, as stored (its own pixel type)."""
    volume = open_volume(path, key, level, channel, timepoint, series)
    return volume[:]


def read_provenance(path: Path) -> dict[str, str] | None:
    """Where a volume voxseg wrote came from, as the writers stored it (`volume_writer`'s
    `provenance`); None for a file without it, and for any file or folder that cannot be read as a
    volume: a foreign file is no error here, only a file without a stamp."""
    path = Path(path)
    kind = family(path)
    try:
        if kind == "tiff":
            from voxseg.io.tiff import read_provenance as read
        elif kind == "zarr":
            from voxseg.io.zarr_volume import read_provenance as read
        elif kind == "hdf5":
            from voxseg.io.hdf5_volume import read_provenance as read
        else:
            return None
        return read(path)
    except Exception:  # each format's library raises its own types for what is not its format
        return None


def z_slabs(shape: tuple[int, ...], voxels: int) -> list[tuple[int, int]]:
    """(z0, z1) ranges of whole planes, about `voxels` voxels each (at least one plane), covering a
    volume of `shape`: how volumes larger than memory are checked, scanned and labelled."""
    depth = max(1, voxels // max(1, shape[1] * shape[2]))
    return [(z, min(z + depth, shape[0])) for z in range(0, shape[0], depth)]


def describe_spacing(spacing: Spacing | None) -> str:
    if spacing is None:
        return "unknown"
    return " × ".join(f"{s:.4g}" for s in spacing) + " µm (Z × Y × X)"
