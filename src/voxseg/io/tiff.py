"""TIFF volumes for prediction: opened without loading them whole, written plane by plane.

tifffile maps an uncompressed, contiguous TIFF or BigTIFF (what tifffile, ImageJ and most
acquisition software write) straight from disk, so a volume larger than memory is read window row
by window row. Other TIFFs (compressed, tiled) are read whole, and the log says so.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile

from voxseg.errors import DataError


def open_volume(path: Path) -> tuple[np.ndarray, bool]:
    """The Z×Y×X volume in `path` and whether it is memory-mapped (True) or was read whole."""
    try:
        array, mapped = tifffile.memmap(path, mode="r"), True
    except (ValueError, OSError, tifffile.TiffFileError):
        try:
            array, mapped = tifffile.imread(path), False
        except Exception as exc:  # tifffile raises many types for corrupt files
            raise DataError(f"{path}: cannot read as TIFF ({type(exc).__name__}: {exc})") from None
    if array.ndim > 3 and sum(side > 1 for side in array.shape) == 3:
        array = array.reshape([side for side in array.shape if side > 1])
    if array.ndim != 3:
        raise DataError(f"{path}: not a 3D volume (shape {array.shape}); voxseg needs Z×Y×X volumes")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{path}: unsupported pixel type {array.dtype}")
    return array, mapped


def voxel_size(path: Path) -> tuple[float, float, float] | None:
    """(Z, Y, X) in µm from ImageJ metadata (spacing) and the resolution tags; None when unknown."""
    try:
        with tifffile.TiffFile(path) as tif:
            imagej = tif.imagej_metadata or {}
            page = tif.pages.first
            z = imagej.get("spacing")
            x_tag, y_tag = page.tags.get("XResolution"), page.tags.get("YResolution")
            if z is None or x_tag is None or y_tag is None:
                return None
            (xn, xd), (yn, yd) = x_tag.value, y_tag.value
            if not (xn and yn):
                return None
            return (float(z), yd / yn, xd / xn)
    except Exception:  # metadata is optional: an unreadable field means "unknown"
        return None


@contextmanager
def planes_writer(
    path: Path, shape: tuple[int, int, int], dtype: np.dtype, overwrite: bool
) -> Iterator[np.ndarray]:
    """A writable memory map of a new TIFF at `path`, renamed into place when the block succeeds.

    The file is written beside the target under a temporary name, so a reader (or a crash) never
    sees half a volume; an existing `path` is refused unless `overwrite`.
    """
    if path.exists() and not overwrite:
        raise DataError(f"{path} already exists; give --overwrite to replace it")
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tif", dir=path.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        array = tifffile.memmap(
            temp, shape=shape, dtype=dtype, bigtiff=np.prod(shape) * np.dtype(dtype).itemsize > 2**31
        )
        yield array
        array.flush()
        del array
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
