"""How a stored array becomes a Z×Y×X volume: its spatial axes, pixel type, regions and voxel size.

The format readers (`tiff`, `zarr_volume`, `hdf5_volume`) share these; `formats` opens a file with the
right reader. Kept apart from `formats` so the readers never import the module that imports them.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.errors import DataError

Spacing = tuple[float, float, float]
#: what decoding a damaged chunk, strip or tile raises: OSError (h5py's filters, gzip, a short read),
#: RuntimeError (numcodecs' Blosc and Zstd, and every imagecodecs error, e.g. DeflateError),
#: ValueError (a chunk of the wrong size, bz2, tifffile), and what the standard library's zlib, gzip
#: and lzma raise, which subclasses none of these
READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    RuntimeError,
    ValueError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
)
#: the attribute (Zarr, HDF5) that holds where an output came from
PROVENANCE_KEY = "voxseg"
#: the chunks (Z, Y, X) of a written Zarr or HDF5 volume unless told: 32 planes of 256 × 256
DEFAULT_CHUNKS = (32, 256, 256)


@dataclass(frozen=True)
class Layout:
    """Where Z, Y and X sit in a stored array, and the index every other axis is read at (0 for an
    axis of length 1; the chosen channel on a channel axis, the chosen time point on a time axis)."""

    axes: tuple[int, int, int]
    fixed: tuple[tuple[int, int], ...] = ()

    def index(self, ndim: int) -> list[Any]:
        index: list[Any] = [0] * ndim
        for axis, at in self.fixed:
            index[axis] = at
        return index


_SPATIAL = ("z", "y", "x")
_CHANNEL = ("c", "s", "channel")  # tifffile: C channel, S samples (RGB); NGFF: type or name "c"
_TIME = ("t", "time")  # tifffile: T; NGFF: name "t" or type "time"


def layout(
    path: Path,
    shape: tuple[int, ...],
    names: Sequence[str] | None = None,
    channel: int | None = None,
    timepoint: int | None = None,
) -> Layout:
    """How to read a Z×Y×X volume from an array of `shape`: all axes of a 3D array; of a larger one,
    the axes its metadata `names` Z, Y and X (tifffile's `ZCYX`, OME-Zarr's axes), else the three axes
    longer than 1. One more axis longer than 1 is a channel axis (named C, or the shortest before Y
    and X), read at `channel`; an axis named T (only a named one: a time axis cannot be told from a
    channel axis by its length) is read at `timepoint`. Without the index such an axis needs, DataError
    says how many there are and how to pick one."""
    shape = tuple(int(side) for side in shape)
    if len(shape) < 3:
        raise DataError(f"{path}: not a 3D volume (shape {shape}); voxseg needs Z×Y×X volumes")
    named = [str(name).lower() for name in names] if names is not None and len(names) == len(shape) else None
    if len(shape) == 3 and (named is None or not all(axis in named for axis in _SPATIAL)):
        return Layout((0, 1, 2))
    if named is not None and all(axis in named for axis in _SPATIAL):
        spatial = [named.index(axis) for axis in _SPATIAL]
        channels = [a for a, name in enumerate(named) if name in _CHANNEL and shape[a] > 1]
        times = [a for a, name in enumerate(named) if name in _TIME and shape[a] > 1]
        described = f"axes {''.join(name[0] for name in named).upper()}, shape {shape}"
    else:
        long = [a for a, side in enumerate(shape) if side > 1]
        if len(long) == 3:
            return Layout(tuple(long), ())  # type: ignore[arg-type]
        if len(long) != 4:
            raise DataError(f"{path}: not a 3D volume (shape {shape}); voxseg needs Z×Y×X volumes")
        channels = [min(long[:-2], key=lambda a: shape[a])]  # Y and X come last
        spatial = [a for a in long if a not in channels]
        times = []
        described = f"shape {shape}"
    picked = channels[:1] + times[:1]
    others = [a for a in range(len(shape)) if a not in spatial and a not in picked and shape[a] > 1]
    if others:
        listed = ", ".join(f"{named[a].upper() if named else a} = {shape[a]}" for a in others)
        raise DataError(
            f"{path}: has {listed} ({described}) besides Z, Y, X, one channel axis and one time axis; "
            "voxseg reads one Z×Y×X volume per file"
        )
    fixed = []
    if channels:
        axis, count = channels[0], shape[channels[0]]
        missing = (
            f"{path}: {count} channels on axis {axis} ({described}); voxseg segments one: "
            f"give --channel N (0 to {count - 1}), or split the channels in Fiji"
        )
        fixed.append((axis, _index(path, channel, count, "--channel", "channels", missing)))
    if times:
        axis, count = times[0], shape[times[0]]
        missing = (
            f"{path}: {count} time points ({described}); voxseg segments one: "
            f"give --timepoint T (0 to {count - 1})"
        )
        fixed.append((axis, _index(path, timepoint, count, "--timepoint", "time points", missing)))
    return Layout(tuple(spatial), tuple(fixed))  # type: ignore[arg-type]


def _index(path: Path, chosen: int | None, count: int, option: str, what: str, missing: str) -> int:
    """`chosen`, checked against the `count` indices of an axis; DataError `missing` when not given."""
    if chosen is None:
        raise DataError(missing)
    if not 0 <= chosen < count:
        raise DataError(f"{option} {chosen}: {path} has {count} {what} (0 to {count - 1})")
    return chosen


def check_pixel_type(path: Path, dtype: np.dtype) -> None:
    if not (np.issubdtype(dtype, np.number) or dtype.kind == "b"):
        raise DataError(f"{path}: unsupported pixel type {dtype}")


def read_region(path: Path, stored: Any, key: Any, where: Layout) -> np.ndarray:
    """The Z×Y×X region `key` (an int, a slice, or a tuple of them) of a stored array laid out as
    `where` says (Z, Y and X in any order; other axes are read at their fixed index), in Z, Y, X
    order. A failing read (a corrupt chunk, a truncated file) raises DataError naming the file."""
    parts = key if isinstance(key, tuple) else (key,)
    parts = parts + (slice(None),) * (3 - len(parts))
    index = where.index(len(stored.shape))
    for axis, part in zip(where.axes, parts, strict=True):
        index[axis] = part
    try:
        region = np.asarray(stored[tuple(index)])
    except READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read {key!r} ({type(exc).__name__}: {exc})") from None
    kept = [axis for axis, part in zip(where.axes, parts, strict=True) if isinstance(part, slice)]
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


def as_provenance(value: Any) -> dict[str, str] | None:
    """A stored provenance as strings by name; None for anything else (a foreign file's own "voxseg")."""
    if not isinstance(value, dict) or not value:
        return None
    return {str(name): str(text) for name, text in value.items()}
