"""HDF5 volumes (ilastik, BigStitcher exports, PlantSeg, GoNuclear), read by regions with h5py.

The dataset is the file's only dataset of 3 or more dimensions, or the one named by a key. The
voxel size is the dataset's `element_size_um` attribute (ilastik's and PlantSeg's convention), in
Z, Y, X order. h5py reads only the chunks (or, for contiguous datasets, the bytes) a region needs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.errors import DataError
from voxseg.io.stored import (
    DEFAULT_CHUNKS,
    PROVENANCE_KEY,
    Spacing,
    as_provenance,
    as_spacing,
    check_pixel_type,
    layout,
    read_region,
)


class Hdf5Volume:
    """A Z×Y×X dataset of an HDF5 file; the file is opened once per process (loader workers are forked,
    and an h5py handle must not cross a fork)."""

    lazy = True

    def __init__(
        self, path: Path, key: str | None = None, channel: int | None = None, timepoint: int | None = None
    ) -> None:
        import h5py

        self.path = Path(path)
        try:
            handle = h5py.File(self.path, "r")
        except Exception as exc:  # h5py raises OSError with HDF5's message for what is no HDF5 file
            raise DataError(_unreadable(self.path, exc)) from None
        try:
            self._describe(handle, key, channel, timepoint)
        except BaseException:
            handle.close()
            raise
        self._file, self._pid = handle, os.getpid()

    def _describe(self, handle: Any, key: str | None, channel: int | None, timepoint: int | None) -> None:
        """The dataset's key, shape, axes, pixel type and voxel size; DataError naming the file."""
        datasets = _datasets(handle)
        if key:
            if key.strip("/") not in datasets:
                listed = ", ".join(datasets) or "none"
                raise DataError(f"{self.path}: has no dataset {key!r}; its datasets are {listed}")
            self.key = key.strip("/")
        else:
            volumes = [name for name, dataset in datasets.items() if dataset.ndim >= 3]
            if not volumes:
                found = ", ".join(f"{n} {d.shape}" for n, d in datasets.items()) or "no datasets"
                raise DataError(f"{self.path}: holds no dataset of 3 or more dimensions ({found})")
            if len(volumes) > 1:
                raise DataError(
                    f"{self.path}: holds several datasets ({', '.join(volumes)}); name one with "
                    "--image-key/--label-key"
                )
            self.key = volumes[0]
        dataset = datasets[self.key]
        shape = tuple(int(s) for s in dataset.shape)
        self.layout = layout(self.path, shape, _axis_names(dataset), channel, timepoint)
        self.axes = self.layout.axes
        self.dtype = np.dtype(dataset.dtype)
        check_pixel_type(self.path, self.dtype)
        self.shape: tuple[int, int, int] = tuple(shape[a] for a in self.axes)  # type: ignore[assignment]
        # Z, Y, X µm; a value per stored axis (e.g. ilastik's with a channel) is taken at Z, Y, X
        size = np.ravel(dataset.attrs.get("element_size_um", []))
        if len(size) == len(shape) != 3:
            size = size[list(self.axes)]
        self.voxel_size: Spacing | None = as_spacing(size) if len(size) == 3 else None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def _dataset(self) -> Any:
        if self._pid != os.getpid():
            import h5py

            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file[self.key]

    @property
    def plane_block(self) -> int:
        """Planes stored together (the chunks' depth): reading one plane costs reading them all."""
        chunks = getattr(self._dataset(), "chunks", None)
        return int(chunks[self.layout.axes[0]]) if chunks else 1

    @property
    def stored_array(self) -> Any:
        """The array as stored (all its axes), for viewers that read it lazily themselves."""
        return self._dataset()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_pid": None}

    def __getitem__(self, key: Any) -> np.ndarray:
        return read_region(self.path, self._dataset(), key, self.layout)


def _unreadable(path: Path, exc: Exception) -> str:
    """Why h5py cannot open `path`: HDF5 compares the file's size with the size its superblock
    records, so a copy cut short is refused at open and said as such."""
    cut = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", str(exc))
    if cut:
        return f"{path}: cut short: the file is {cut[1]} bytes, its data needs {cut[2]} (copy it again?)"
    return f"{path}: cannot read as HDF5 ({type(exc).__name__}: {exc})"


def _axis_names(dataset: Any) -> list[str] | None:
    """The axes ilastik names in its `axistags` attribute (JSON), e.g. z, y, x, c; None without them."""
    try:
        return [axis["key"] for axis in json.loads(dataset.attrs["axistags"])["axes"]]
    except (KeyError, TypeError, ValueError):
        return None


def _datasets(handle: Any) -> dict[str, Any]:
    """Every dataset in the file, by its path without the leading '/'."""
    import h5py

    found: dict[str, Any] = {}

    def visit(name: str, node: Any) -> None:
        if isinstance(node, h5py.Dataset):
            found[name] = node

    handle.visititems(visit)
    return found


def read_provenance(path: Path) -> dict[str, str] | None:
    """The provenance `Hdf5Writer` stored: the JSON of the first dataset's "voxseg" attribute; None
    without (or when that attribute is not voxseg's)."""
    import h5py

    with h5py.File(path, "r") as handle:
        for dataset in _datasets(handle).values():
            if PROVENANCE_KEY in dataset.attrs:
                try:
                    return as_provenance(json.loads(dataset.attrs[PROVENANCE_KEY]))
                except (TypeError, ValueError):
                    return None
    return None


class Hdf5Writer:
    """Writes Z ranges of a new HDF5 file's dataset "data", chunked, with `element_size_um`; the
    dataset's "voxseg" attribute keeps `provenance` as JSON (one string, which every HDF5 reader shows)."""

    def __init__(
        self,
        path: Path,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        voxel_size: Spacing | None,
        chunks: tuple[int, int, int] = DEFAULT_CHUNKS,
        provenance: Mapping[str, str] | None = None,
    ):
        import h5py

        self.file = h5py.File(path, "w")
        chunks = tuple(min(s, c) for s, c in zip(shape, chunks, strict=True))
        self.dataset = self.file.create_dataset("data", shape=shape, dtype=np.dtype(dtype), chunks=chunks)
        if voxel_size is not None:
            self.dataset.attrs["element_size_um"] = np.asarray(voxel_size, np.float64)
        if provenance:
            self.dataset.attrs[PROVENANCE_KEY] = json.dumps(dict(provenance), sort_keys=True)

    @classmethod
    def existing(cls, path: Path) -> Hdf5Writer:
        """A file this class created, opened to write more Z ranges (by one process: HDF5 has no
        concurrent writers without MPI)."""
        import h5py

        writer = cls.__new__(cls)
        writer.file = h5py.File(path, "r+")
        writer.dataset = writer.file["data"]
        return writer

    def __setitem__(self, key: slice, planes: np.ndarray) -> None:
        self.dataset[key] = planes

    def close(self) -> None:
        self.file.close()
