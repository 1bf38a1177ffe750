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

Family = Literal["tiff", "zarr", "hdf5"]
Spacing = tuple[float, float, float]

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


def open_volume(path: Path, key: str | None = None, level: int = 0) -> VolumeFile:
    """Open `path` for region reads; `key` names the dataset in an HDF5 file or Zarr group, `level`
    the multiscale level of an OME-Zarr image (0 = full resolution). Raises DataError naming the file."""
    path = Path(path)
    kind = family(path)
    if kind == "tiff":
        from voxseg.io.tiff import TiffVolume

        if level:
            raise DataError(f"{path}: has no multiscale level {level} (levels are read from OME-Zarr)")
        return TiffVolume(path)
    if kind == "zarr":
        from voxseg.io.zarr_volume import ZarrVolume

        return ZarrVolume(path, key, level)
    if kind == "hdf5":
        from voxseg.io.hdf5_volume import Hdf5Volume

        if level:
            raise DataError(f"{path}: has no multiscale level {level} (levels are read from OME-Zarr)")
        return Hdf5Volume(path, key)
    raise DataError(f"{path}: not a volume voxseg reads ({DESCRIPTION})")


def read_whole(path: Path, key: str | None = None, level: int = 0) -> np.ndarray:
    """The whole volume in memory, as stored (its own pixel type)."""
    volume = open_volume(path, key, level)
    return volume[:]


def spatial_axes(path: Path, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The positions of Z, Y and X in an array of `shape`: all axes of a 3D array, or the three axes
    longer than 1 of a larger one (a 1-channel or 1-time-point hyperstack)."""
    if len(shape) > 3 and sum(side > 1 for side in shape) == 3:
        return tuple(axis for axis, side in enumerate(shape) if side > 1)
    if len(shape) != 3:
        raise DataError(f"{path}: not a 3D volume (shape {tuple(shape)}); voxseg needs Z×Y×X volumes")
    return (0, 1, 2)


def check_pixel_type(path: Path, dtype: np.dtype) -> None:
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b"):
        raise DataError(f"{path}: unsupported pixel type {dtype}")


def z_slabs(shape: tuple[int, ...], voxels: int) -> list[tuple[int, int]]:
    """(z0, z1) ranges of whole planes, about `voxels` voxels each (at least one plane), covering a
    volume of `shape`: how volumes larger than memory are checked, scanned and labelled."""
    depth = max(1, voxels // max(1, shape[1] * shape[2]))
    return [(z, min(z + depth, shape[0])) for z in range(0, shape[0], depth)]


def read_region(path: Path, stored: Any, key: Any, axes: tuple[int, ...]) -> np.ndarray:
    """The Z×Y×X region `key` (an int, a slice, or a tuple of them) of a stored array whose Z, Y and X
    are at positions `axes` (in any order; other axes have length 1 and are taken at 0), in Z, Y, X
    order. A failing read (a corrupt chunk, a truncated file) raises DataError naming the file."""
    parts = key if isinstance(key, tuple) else (key,)
    parts = parts + (slice(None),) * (3 - len(parts))
    index: list[Any] = [0] * len(stored.shape)
    for axis, part in zip(axes, parts, strict=True):
        index[axis] = part
    try:
        region = np.asarray(stored[tuple(index)])
    except (OSError, RuntimeError, ValueError) as exc:  # zarr's codecs, h5py's filters
        raise DataError(f"{path}: cannot read {key!r} ({type(exc).__name__}: {exc})") from None
    kept = [axis for axis, part in zip(axes, parts, strict=True) if isinstance(part, slice)]
    stored_order = sorted(kept)  # the region's axes come in the stored order
    return region.transpose([stored_order.index(axis) for axis in kept])


_MICROMETRES = {
    "angstrom": 1e-4,
    "centimeter": 1e4,
    "meter": 1e6,
    "micrometer": 1.0,
    "micron": 1.0,
    "um": 1.0,
    "µm": 1.0,
    "nanometer": 1e-3,
    "nm": 1e-3,
    "millimeter": 1e3,
    "mm": 1e3,
}


def micrometres(unit: str | None) -> float | None:
    """How many µm one `unit` is (µm when None); None for units that are no length voxseg knows."""
    if unit is None:
        return 1.0
    return _MICROMETRES.get(str(unit).strip().lower())


def as_spacing(values: Any, scale: float = 1.0) -> Spacing | None:
    """Three positive finite numbers as (Z, Y, X) µm, else None (metadata is optional)."""
    try:
        z, y, x = (float(v) * scale for v in values)
    except (TypeError, ValueError):
        return None
    sizes = (z, y, x)
    return sizes if all(np.isfinite(s) and s > 0 for s in sizes) else None


def describe_spacing(spacing: Spacing | None) -> str:
    if spacing is None:
        return "unknown"
    return " × ".join(f"{s:.4g}" for s in spacing) + " µm (Z × Y × X)"
