"""Zarr arrays and OME-Zarr images (NGFF 0.4 and 0.5), read by regions; predictions written as OME-Zarr.

zarr reads only the chunks a region touches, so a patch of a volume far larger than memory costs
the few chunks under it. An OME-Zarr image is a group whose `multiscales` metadata lists its
resolution levels (level 0 is full resolution) with each level's voxel size and the axes' names
and units; a plain Zarr array is read as it is, and a plain group by its only 3D array or `key`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.errors import DataError
from voxseg.io.stored import (
    DEFAULT_CHUNKS,
    PROVENANCE_KEY,
    Layout,
    Spacing,
    as_provenance,
    as_spacing,
    check_pixel_type,
    layout,
    micrometres,
    read_region,
)


class ZarrVolume:
    """A Z×Y×X volume in a Zarr store (a folder), at one multiscale level of an OME-Zarr image."""

    lazy = True

    def __init__(
        self,
        path: Path,
        key: str | None = None,
        level: int = 0,
        channel: int | None = None,
        timepoint: int | None = None,
    ) -> None:
        import zarr

        self.path = Path(path)
        try:
            root = zarr.open(str(self.path), mode="r")
        except Exception as exc:  # zarr raises several types for what is not a store
            raise DataError(f"{path}: cannot read as Zarr ({type(exc).__name__}: {exc})") from None
        try:  # a group's members' metadata is read here: damaged JSON, or what zarr cannot parse
            node, self.voxel_size, where = _choose(self.path, root, key, level, channel, timepoint)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: damaged Zarr metadata ({type(exc).__name__}: {exc})") from None
        self.member = node.path  # the array's path inside the store, reopened per process
        shape = tuple(int(s) for s in node.shape)
        self.layout = where if where is not None else layout(self.path, shape, None, channel, timepoint)
        self.axes = self.layout.axes  # where Z, Y and X sit in `stored_array`, as napari's reader asks
        self.dtype = np.dtype(node.dtype)
        check_pixel_type(self.path, self.dtype)
        self.shape: tuple[int, int, int] = tuple(shape[a] for a in self.layout.axes)  # type: ignore[assignment]
        self._array, self._pid = node, os.getpid()

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def _node(self) -> Any:
        """The array, reopened in a new process (loader workers are forked)."""
        if self._pid != os.getpid():
            import zarr

            self._array, self._pid = zarr.open(str(self.path), mode="r", path=self.member), os.getpid()
        return self._array

    @property
    def plane_block(self) -> int:
        """Planes stored together (the chunks' depth): reading one plane costs reading them all."""
        chunks = getattr(self._node(), "chunks", None)
        return int(chunks[self.layout.axes[0]]) if chunks else 1

    @property
    def stored_array(self) -> Any:
        """The array as stored (all its axes), for viewers that read it lazily themselves."""
        return self._node()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None, "_pid": None}

    def __getitem__(self, key: Any) -> np.ndarray:
        return read_region(self.path, self._node(), key, self.layout)


def _choose(
    path: Path, root: Any, key: str | None, level: int, channel: int | None, timepoint: int | None
) -> tuple[Any, Spacing | None, Layout | None]:
    """(the array, its voxel size, its layout when the metadata names its axes)."""
    import zarr

    if key:
        if isinstance(root, zarr.Array):
            raise DataError(f"{path}: is a single array; it has no dataset {key!r}")
        if key not in root:
            raise DataError(f"{path}: has no dataset {key!r}; it has {', '.join(_arrays(root)) or 'none'}")
        root = root[key]
    if isinstance(root, zarr.Array):
        if level:
            raise DataError(f"{path}: a plain Zarr array has no multiscale level {level}")
        return root, as_spacing(root.attrs.get("element_size_um", ())), None
    multiscales = _multiscales(root.attrs)
    if multiscales:
        try:
            return _ome_level(path, root, multiscales[0], level, channel, timepoint)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: malformed OME-Zarr metadata ({type(exc).__name__}: {exc})") from None
    if level:
        raise DataError(f"{path}: has no multiscale metadata, so no level {level}")
    candidates = [name for name, array in _arrays(root).items() if array.ndim >= 3]
    if not candidates:
        raise DataError(f"{path}: holds no array of 3 or more dimensions")
    if len(candidates) > 1:
        raise DataError(
            f"{path}: holds several arrays ({', '.join(candidates)}); name one with --image-key/--label-key"
        )
    array = root[candidates[0]]
    return array, as_spacing(array.attrs.get("element_size_um", ())), None


def _arrays(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every array under `group`, by its path."""
    found = {}
    for name, array in group.arrays():
        found[prefix + name] = array
    for name, child in group.groups():
        found.update(_arrays(child, prefix + name + "/"))
    return found


def _multiscales(attrs: Any) -> list[dict[str, Any]]:
    """NGFF 0.5 keeps its metadata under "ome"; 0.4 at the top of the group's attributes."""
    ome = attrs.get("ome")
    multiscales = (ome if isinstance(ome, dict) else attrs).get("multiscales") or []
    return multiscales if isinstance(multiscales, list) else [multiscales]


def _ome_level(
    path: Path,
    group: Any,
    multiscale: dict[str, Any],
    level: int,
    channel: int | None,
    timepoint: int | None,
) -> tuple[Any, Spacing | None, Layout]:
    datasets = multiscale.get("datasets") or []
    if not 0 <= level < len(datasets):
        raise DataError(f"{path}: has no level {level}; its levels are 0 to {len(datasets) - 1}")
    dataset = datasets[level]
    if dataset.get("path") not in group or not hasattr(group[dataset["path"]], "dtype"):
        raise DataError(f"{path}: level {level}'s array {dataset.get('path')!r} is missing")
    array = group[dataset["path"]]
    axes = multiscale.get("axes") or []
    names = [  # an axis of type channel or time is one whatever its name
        str(a.get("type") if a.get("type") in ("channel", "time") else a.get("name"))
        if isinstance(a, dict)
        else str(a)
        for a in axes
    ]
    if len(names) != array.ndim:  # NGFF 0.3 and older name no axes: take the last three
        names, axes = [""] * (array.ndim - 3) + ["z", "y", "x"], []
    where = layout(path, array.shape, names, channel, timepoint)
    order = where.axes
    scale = np.ones(array.ndim)
    for transforms in (dataset.get("coordinateTransformations"), multiscale.get("coordinateTransformations")):
        for transform in transforms or []:
            if transform.get("type") == "scale" and len(transform.get("scale", [])) == array.ndim:
                scale = scale * np.asarray(transform["scale"], float)
    units = (
        [axes[i].get("unit") if isinstance(axes[i], dict) else None for i in order] if axes else [None] * 3
    )
    sides = [scale[i] for i in order]
    if all(unit is None for unit in units) and all(side == 1 for side in sides):
        return array, None, where  # a unitless identity scale says nothing about the voxel size
    to_um = [micrometres(unit) for unit in units]  # NGFF allows a unit per axis
    spacing = None if None in to_um else as_spacing([s * u for s, u in zip(sides, to_um, strict=True)])
    return array, spacing, where


def read_provenance(path: Path) -> dict[str, str] | None:
    """The provenance `ZarrWriter` stored in the store's root attributes; None without."""
    import zarr

    return as_provenance(zarr.open(str(path), mode="r").attrs.get(PROVENANCE_KEY))


class ZarrWriter:
    """Writes Z ranges of a new OME-Zarr image (one level, NGFF 0.4, Zarr format 2: what napari,
    Fiji's readers and zarr 2 and 3 all open).

    Zarr format 2 without sharding stores each chunk in its own file, written atomically (a
    temporary file renamed), so processes that write disjoint rows of chunks need no lock; the
    metadata is written once, by whoever creates the image (`existing` opens it without). The
    image group's attributes keep `provenance` under "voxseg", beside `multiscales`."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        voxel_size: Spacing | None,
        chunks: tuple[int, int, int] = DEFAULT_CHUNKS,
        provenance: Mapping[str, str] | None = None,
    ):
        import zarr

        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        unit = {"unit": "micrometer"} if voxel_size is not None else {}  # no unit: the size is unknown
        chunks = tuple(min(s, c) for s, c in zip(shape, chunks, strict=True))
        self.array = group.create_array("0", shape=shape, dtype=np.dtype(dtype), chunks=chunks, fill_value=0)
        group.attrs["multiscales"] = [
            {
                "version": "0.4",
                "axes": [{"name": axis, "type": "space", **unit} for axis in "zyx"],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": list(voxel_size or (1.0, 1.0, 1.0))}
                        ],
                    }
                ],
            }
        ]
        if provenance:
            group.attrs[PROVENANCE_KEY] = dict(provenance)

    @classmethod
    def existing(cls, path: Path) -> ZarrWriter:
        """An image this class created, opened to write more Z ranges."""
        import zarr

        writer = cls.__new__(cls)
        writer.array = zarr.open_array(str(path), path="0", mode="r+")
        return writer

    def __setitem__(self, key: slice, planes: np.ndarray) -> None:
        self.array[key] = planes
