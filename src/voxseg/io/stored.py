"""How a stored array becomes a Z×Y×X volume: its spatial axes, pixel type, regions and voxel size.

The format readers (`tiff`, `zarr_volume`, `hdf5_volume`) share these; `formats` opens a file with the
right reader. Kept apart from `formats` so the readers never import the module that imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from voxseg.errors import DataError

Spacing = tuple[float, float, float]


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
