"""TIFF volumes: opened without loading them whole, written plane by plane.

tifffile maps an uncompressed, contiguous TIFF or BigTIFF (what tifffile, ImageJ and most
acquisition software write) straight from disk, so a volume larger than memory is read window row
by window row. Other TIFFs (compressed, tiled) are read whole, and the log says so.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile

from voxseg.errors import DataError
from voxseg.io.stored import Spacing, check_pixel_type, layout, micrometres, read_region
from voxseg.runtime.files import replacing


class TiffVolume:
    """A Z×Y×X volume in a TIFF, read by ranges of Z planes.

    An uncompressed, contiguous file has its planes mapped for each read and released after it,
    so memory holds only the planes asked for: a mapping of the whole file would keep every page
    read in the process's resident memory. Other files are read whole once.
    """

    def __init__(self, path: Path, channel: int | None = None) -> None:
        self.path = Path(path)
        try:
            with tifffile.TiffFile(self.path) as tif:
                series = tif.series[0]
                self.stored_shape, self.offset = tuple(series.shape), series.dataoffset
                axes = series.axes  # e.g. ZCYX for an ImageJ hyperstack
                self.dtype = np.dtype(series.dtype)
                # the bytes on disk: Fiji writes big-endian ("MM") TIFFs by default
                self.stored = self.dtype.newbyteorder(tif.byteorder)
        except Exception as exc:  # tifffile raises many types for corrupt files
            raise DataError(f"{path}: cannot read as TIFF ({type(exc).__name__}: {exc})") from None
        self.layout = layout(self.path, self.stored_shape, list(axes), channel)
        shape = tuple(self.stored_shape[axis] for axis in self.layout.axes)
        check_pixel_type(self.path, self.dtype)
        self.shape: tuple[int, int, int] = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.voxel_size = voxel_size(self.path)
        self._whole: np.ndarray | None = None

    @property
    def mapped(self) -> bool:
        return self.offset is not None

    @property
    def lazy(self) -> bool:
        return self.mapped

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __getitem__(self, key: int | slice | tuple[slice, ...]) -> np.ndarray:
        """`key` (a Z index, a step-1 Z slice, or a tuple of slices with Z first) as an array in memory;
        of a mapped file, only the pages of that region are read."""
        zs, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        single = not isinstance(zs, slice)
        if single:  # one plane: an int or numpy integer, negative from the end
            zs = operator.index(zs) % self.shape[0]
            zs = slice(zs, zs + 1)
        z0, z1, _ = zs.indices(self.shape[0])
        if z1 <= z0:
            planes = np.zeros((0, *self.shape[1:]), self.dtype)[(slice(None), *rest)]
        else:
            try:
                planes = self._read(z0, z1, rest)
            except (OSError, ValueError, tifffile.TiffFileError) as exc:  # e.g. a truncated file
                raise DataError(f"{self.path}: cannot read as TIFF ({type(exc).__name__}: {exc})") from None
        return planes[0] if single else planes

    def _read(self, z0: int, z1: int, rest: tuple) -> np.ndarray:
        region = (slice(z0, z1), *rest)
        if not self.mapped:
            if self._whole is None:
                self._whole = tifffile.imread(self.path).reshape(self.stored_shape)
            return read_region(self.path, self._whole, region, self.layout)
        mapped = np.memmap(self.path, self.stored, "r", self.offset, self.stored_shape)
        planes = np.array(read_region(self.path, mapped, region, self.layout), dtype=self.dtype)
        del mapped
        return planes


def _micrometres(unit: str) -> float | None:
    """µm per ImageJ/OME length unit (ImageJ writes µ escaped as `\\u00b5`)."""
    return micrometres(unit.replace("\\u00b5", "µ"))


def voxel_size(path: Path) -> Spacing | None:
    """(Z, Y, X) in µm from OME metadata (PhysicalSize*), else ImageJ's (spacing and the resolution
    tags); None when unknown."""
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                return _ome_voxel_size(tif.ome_metadata)
            imagej = tif.imagej_metadata or {}
            page = tif.pages.first
            z = imagej.get("spacing")
            x_tag, y_tag = page.tags.get("XResolution"), page.tags.get("YResolution")
            if z is None or x_tag is None or y_tag is None:
                return None
            (xn, xd), (yn, yd) = x_tag.value, y_tag.value
            to_um = _micrometres(str(imagej.get("unit", "micron")))
            if not (xn and yn) or to_um is None:
                return None
            return (float(z) * to_um, yd / yn * to_um, xd / xn * to_um)
    except Exception:  # metadata is optional: an unreadable field means "unknown"
        return None


def _ome_voxel_size(xml: str) -> tuple[float, float, float] | None:
    """PhysicalSizeZ/Y/X of the first image's Pixels, in µm (OME's default unit)."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(xml)
    namespace = root.tag.split("}")[0].strip("{")
    pixels = root.find(f".//{{{namespace}}}Pixels")
    if pixels is None:
        return None
    sizes = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        to_um = _micrometres(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is None or to_um is None:
            return None
        sizes.append(float(value) * to_um)
    return (sizes[0], sizes[1], sizes[2])


class PlanesWriter:
    """Writes Z ranges of a new uncompressed TIFF; each write maps only its planes, then releases them.

    Processes on one machine may write disjoint planes of the same file (`existing`): each maps only
    its own bytes."""

    def __init__(
        self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, voxel_size: Spacing | None = None
    ) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        big = int(np.prod(shape)) * self.dtype.itemsize > 2**31
        # OME metadata carries the voxel size for any pixel type (ImageJ's only for 8/16/32-bit)
        metadata: dict[str, object] = {"axes": "ZYX"}
        if voxel_size is not None:
            for axis, size in zip("ZYX", voxel_size, strict=True):
                metadata[f"PhysicalSize{axis}"] = size
                metadata[f"PhysicalSize{axis}Unit"] = "µm"
        # minisblack: 3 or 4 planes are a stack, not an RGB(A) image
        created = tifffile.memmap(
            path,
            shape=shape,
            dtype=self.dtype,
            bigtiff=big,
            photometric="minisblack",
            ome=True,
            metadata=metadata,
        )
        self.offset = created.offset
        del created

    @classmethod
    def existing(cls, path: Path) -> PlanesWriter:
        """A file this class created, opened to write more Z ranges."""
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            writer = cls.__new__(cls)
            writer.path, writer.shape, writer.dtype = Path(path), tuple(series.shape), np.dtype(series.dtype)
            writer.offset = series.dataoffset
        return writer

    def __setitem__(self, key: slice, planes: np.ndarray) -> None:
        z0, z1, _ = key.indices(self.shape[0])
        plane_bytes = self.shape[1] * self.shape[2] * self.dtype.itemsize
        mapped = np.memmap(
            self.path, self.dtype, "r+", self.offset + z0 * plane_bytes, (z1 - z0, *self.shape[1:])
        )
        mapped[:] = planes
        mapped.flush()
        del mapped


@contextmanager
def planes_writer(
    path: Path,
    shape: tuple[int, int, int],
    dtype: np.dtype,
    overwrite: bool,
    voxel_size: Spacing | None = None,
) -> Iterator[PlanesWriter]:
    """A `PlanesWriter` for a new TIFF at `path`, renamed into place when the block succeeds.

    The file is written beside the target under a temporary name, so a reader (or a crash) never
    sees half a volume; an existing `path` is refused unless `overwrite`.
    """
    if path.exists() and not overwrite:
        raise DataError(f"{path} already exists; give --overwrite to replace it")
    with replacing(path, ".tif") as temp:
        yield PlanesWriter(temp, shape, dtype, voxel_size)
