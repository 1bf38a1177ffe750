"""TIFF volumes: opened without loading them whole, written plane by plane.

tifffile maps an uncompressed, contiguous TIFF or BigTIFF (what tifffile, ImageJ and most
acquisition software write) straight from disk, so a volume larger than memory is read window row
by window row. Other TIFFs (compressed, tiled) are read whole, and the log says so.

A file cut short (a copy that stopped) is refused when it is opened, from its headers alone: tifffile
would open it, then fail or read fewer planes when the planes are decoded, deep into a run.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile

from voxseg.errors import DataError
from voxseg.io.stored import READ_ERRORS, Spacing, check_pixel_type, layout, micrometres, read_region
from voxseg.runtime.files import replacing

#: the namespace of the OME MapAnnotation that holds voxseg's provenance of an output
PROVENANCE_NAMESPACE = "voxseg/provenance"


class TiffVolume:
    """A Z×Y×X volume in a TIFF, read by ranges of Z planes.

    An uncompressed, contiguous file has its planes mapped for each read and released after it,
    so memory holds only the planes asked for: a mapping of the whole file would keep every page
    read in the process's resident memory. Other files are read whole once.
    """

    def __init__(
        self, path: Path, channel: int | None = None, timepoint: int | None = None, image: int | None = None
    ) -> None:
        self.path = Path(path)
        try:
            with tifffile.TiffFile(self.path) as tif:
                _check_headers(self.path, tif)
                self.image = _image_index(self.path, tif.series, image)
                series = tif.series[self.image]
                _check_data(self.path, tif, series)
                self.stored_shape, self.offset = tuple(series.shape), series.dataoffset
                axes = series.axes  # e.g. ZCYX for an ImageJ hyperstack
                self.dtype = np.dtype(series.dtype)
                # the bytes on disk: Fiji writes big-endian ("MM") TIFFs by default
                self.stored = self.dtype.newbyteorder(tif.byteorder)
        except DataError:
            raise
        except Exception as exc:  # tifffile raises many types for corrupt files
            raise DataError(f"{path}: cannot read as TIFF ({type(exc).__name__}: {exc})") from None
        self.layout = layout(self.path, self.stored_shape, list(axes), channel, timepoint)
        shape = tuple(self.stored_shape[axis] for axis in self.layout.axes)
        check_pixel_type(self.path, self.dtype)
        self.shape: tuple[int, int, int] = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.voxel_size = voxel_size(self.path, self.image)
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
            except READ_ERRORS as exc:  # a damaged strip: imagecodecs' DeflateError is a RuntimeError
                raise DataError(f"{self.path}: cannot read as TIFF ({type(exc).__name__}: {exc})") from None
        return planes[0] if single else planes

    def _read(self, z0: int, z1: int, rest: tuple) -> np.ndarray:
        region = (slice(z0, z1), *rest)
        if not self.mapped:
            if self._whole is None:
                self._whole = tifffile.imread(self.path, series=self.image).reshape(self.stored_shape)
            return read_region(self.path, self._whole, region, self.layout)
        mapped = np.memmap(self.path, self.stored, "r", self.offset, self.stored_shape)
        planes = np.array(read_region(self.path, mapped, region, self.layout), dtype=self.dtype)
        del mapped
        return planes


def _check_headers(path: Path, tif: tifffile.TiffFile) -> None:
    """DataError when the file ends before its page headers do: tifffile drops what lies past the
    end (pages, the metadata with the voxel size) and opens the rest as another image."""
    size, reach = tif.filehandle.size, _headers_reach(tif)
    if reach > size:
        raise DataError(
            f"{path}: cut short: the file is {size} bytes, its page headers need at least {reach} "
            "(copy it again?)"
        )


def _check_data(path: Path, tif: tifffile.TiffFile, series: tifffile.TiffPageSeries) -> None:
    """DataError when the file ends before the image data its headers locate do: tifffile would
    fail only when the planes are decoded, deep into a run."""
    size = tif.filehandle.size
    if not series.nbytes:  # no planes to read: the volume is refused as empty where it is used
        return
    if series.dataoffset is not None:  # contiguous: one mapped block
        needed = series.dataoffset + series.nbytes
    else:  # every strip or tile of every page (pages of a multi-file OME series lie in their own files)
        needed = max(
            (
                offset + count
                for page in series.pages
                if page is not None and page.parent is tif
                for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True)
            ),
            default=0,
        )
    if needed > size:
        raise DataError(
            f"{path}: cut short: the file is {size} bytes, its image data needs {needed} (copy it again?)"
        )


def _headers_reach(tif: tifffile.TiffFile) -> int:
    """How far the chain of page headers goes, walked from the first page: each header, the values of
    the tags tifffile needs, and the page it points to (0: none). Past the end of the file, tifffile
    drops those pages or that metadata, or follows garbage from a header cut short."""
    size, tagnosize = tif.filehandle.size, tif.tiff.tagnosize
    reach, start, seen = 0, tif.pages.first.offset, set()
    while start and start not in seen:  # a chain back to a page seen ends, as in tifffile
        if start >= size:
            return max(reach, start + tagnosize)
        seen.add(start)
        end, start = _header(tif, start)
        reach = max(reach, end)
    return reach


#: tags whose values tifffile needs for the image and its voxel size: the description (OME, ImageJ,
#: tifffile's shape), the resolutions, ImageJ's metadata, where the strips or tiles lie
_NEEDED_TAGS = frozenset({270, 273, 279, 282, 283, 324, 325, 50838, 50839})


def _header(tif: tifffile.TiffFile, start: int) -> tuple[int, int]:
    """(where the page header at `start` and the values of its needed tags end, where it says the
    next page starts: 0 when none, or when the header is cut short)."""
    form, handle = tif.tiff, tif.filehandle
    handle.seek(start)
    head = handle.read(form.tagnosize)
    if len(head) < form.tagnosize:
        return start + form.tagnosize, 0
    count = struct.unpack(form.tagnoformat, head)[0]
    entries = handle.read(count * form.tagsize + form.offsetsize)
    end = start + form.tagnosize + count * form.tagsize + form.offsetsize
    if len(entries) < end - start - form.tagnosize:
        return end, 0
    for at in range(0, count * form.tagsize, form.tagsize):
        code, kind, number, value = struct.unpack(form.tagheaderformat, entries[at : at + form.tagsize])
        item = tifffile.TIFF.DATA_FORMATS.get(kind)
        nbytes = number * struct.calcsize(form.byteorder + item) if item else 0
        if code in _NEEDED_TAGS and nbytes > form.tagoffsetthreshold:  # kept at the offset `value` holds
            end = max(end, struct.unpack(form.offsetformat, value)[0] + nbytes)
    return end, int(struct.unpack(form.offsetformat, entries[-form.offsetsize :])[0])


def _micrometres(unit: str) -> float | None:
    """µm per ImageJ/OME length unit (ImageJ writes µ escaped as `\\u00b5`)."""
    return micrometres(unit.replace("\\u00b5", "µ"))


def _image_index(path: Path, series: list, image: int | None) -> int:
    """Which image (tifffile series) of the file to read: the only one, else `image` (`--series`). A
    file of several volumes (an OME-TIFF of several positions) is never read as its first in silence."""
    if len(series) == 1:
        return 0
    if image is not None:
        if not 0 <= image < len(series):
            raise DataError(f"--series {image}: {path} holds {len(series)} images (0 to {len(series) - 1})")
        return image
    volumes = [i for i, found in enumerate(series) if sum(side > 1 for side in found.shape) >= 3]
    if len(volumes) <= 1:  # one volume beside thumbnails or labels
        return volumes[0] if volumes else 0
    shown = ", ".join(f"{i}: {series[i].axes} {tuple(series[i].shape)}" for i in volumes[:4])
    more = f" and {len(volumes) - 4} more" if len(volumes) > 4 else ""
    raise DataError(
        f"{path}: holds {len(volumes)} volumes ({shown}{more}); voxseg segments one: give --series S "
        f"(0 to {len(series) - 1})"
    )


def voxel_size(path: Path, image: int = 0) -> Spacing | None:
    """(Z, Y, X) in µm of the file's `image` from OME metadata (PhysicalSize*), else ImageJ's (spacing
    and the resolution tags); None when unknown."""
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                return _ome_voxel_size(tif.ome_metadata, image)
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


def _ome_voxel_size(xml: str, image: int = 0) -> tuple[float, float, float] | None:
    """PhysicalSizeZ/Y/X of the `image`-th image's Pixels, in µm (OME's default unit)."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(xml)
    namespace = root.tag.split("}")[0].strip("{")
    found = root.findall(f".//{{{namespace}}}Pixels")
    if len(found) <= image:
        return None
    pixels = found[image]
    sizes = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        to_um = _micrometres(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is None or to_um is None:
            return None
        sizes.append(float(value) * to_um)
    return (sizes[0], sizes[1], sizes[2])


def read_provenance(path: Path) -> dict[str, str] | None:
    """The provenance `PlanesWriter` stored: the OME MapAnnotation in voxseg's namespace; None without."""
    from xml.etree import ElementTree

    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata if tif.is_ome else None
    if not xml:
        return None
    root = ElementTree.fromstring(xml)
    namespace = root.tag.split("}")[0].strip("{")
    for annotation in root.iter(f"{{{namespace}}}MapAnnotation"):
        if annotation.get("Namespace") == PROVENANCE_NAMESPACE:
            pairs = annotation.iter(f"{{{namespace}}}M")
            return {str(pair.get("K")): pair.text or "" for pair in pairs}
    return None


class PlanesWriter:
    """Writes Z ranges of a new uncompressed TIFF; each write maps only its planes, then releases them.

    Processes on one machine may write disjoint planes of the same file (`existing`): each maps only
    its own bytes. `provenance` is kept as an OME MapAnnotation (key-value pairs that Fiji's
    Bio-Formats and OMERO show) in the OME-XML of the first page, before the planes, so the file
    stays an ordinary OME-TIFF whose planes are one mapped block."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        voxel_size: Spacing | None = None,
        provenance: Mapping[str, str] | None = None,
    ) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        big = int(np.prod(shape)) * self.dtype.itemsize > 2**31
        # OME metadata carries the voxel size for any pixel type (ImageJ's only for 8/16/32-bit)
        metadata: dict[str, object] = {"axes": "ZYX"}
        if voxel_size is not None:
            for axis, size in zip("ZYX", voxel_size, strict=True):
                metadata[f"PhysicalSize{axis}"] = size
                metadata[f"PhysicalSize{axis}Unit"] = "µm"
        if provenance:  # "Value": keys such as "Namespace" or "Description" stay pairs, not attributes
            metadata["MapAnnotation"] = {"Namespace": PROVENANCE_NAMESPACE, "Value": dict(provenance)}
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
    provenance: Mapping[str, str] | None = None,
) -> Iterator[PlanesWriter]:
    """A `PlanesWriter` for a new TIFF at `path`, renamed into place when the block succeeds.

    The file is written beside the target under a temporary name, so a reader (or a crash) never
    sees half a volume; an existing `path` is refused unless `overwrite`.
    """
    if path.exists() and not overwrite:
        raise DataError(f"{path} already exists; give --overwrite to replace it")
    with replacing(path, ".tif") as temp:
        yield PlanesWriter(temp, shape, dtype, voxel_size, provenance)
