"""New volumes written by Z ranges in the family their name says (TIFF, Zarr, HDF5), atomically.

Each is written beside its target under a hidden temporary name and renamed into place when
complete, so a reader (or a crash) never sees half a volume; an existing target is replaced only
when asked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np

from voxseg.errors import DataError
from voxseg.io.formats import Spacing, family
from voxseg.runtime.files import make_public, replacing


class PlanesOut(Protocol):
    def __setitem__(self, key: slice, planes: np.ndarray) -> None: ...


@contextmanager
def volume_writer(
    path: Path,
    shape: tuple[int, int, int],
    dtype: np.dtype,
    overwrite: bool,
    voxel_size: Spacing | None = None,
    provenance: Mapping[str, str] | None = None,
) -> Iterator[PlanesOut]:
    """A writer of Z ranges for a new volume at `path` (.tif, .zarr or .h5), carrying `voxel_size`,
    and `provenance` (where it came from, as strings by name) where `read_provenance` finds it while
    the file stays an ordinary volume for Fiji and napari."""
    kind = family(path)
    if kind == "tiff":
        from voxseg.io.tiff import planes_writer

        with planes_writer(path, shape, dtype, overwrite, voxel_size, provenance) as writer:
            yield writer
        return
    if path.exists() and not overwrite:
        raise DataError(f"{path} already exists; give --overwrite to replace it")
    if kind == "zarr":
        from voxseg.io.zarr_volume import ZarrWriter

        temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".zarr", dir=path.parent))
        try:
            yield ZarrWriter(temp, shape, dtype, voxel_size, provenance=provenance)
            _replace_folder(temp, path)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        return
    if kind == "hdf5":
        from voxseg.io.hdf5_volume import Hdf5Writer

        with replacing(path, ".h5") as temp:
            writer = Hdf5Writer(temp, shape, dtype, voxel_size, provenance=provenance)
            try:
                yield writer
            finally:
                writer.close()
        return
    raise ValueError(f"{path}: no volume format has this suffix")


def create_volume(
    path: Path,
    shape: tuple[int, int, int],
    dtype: np.dtype,
    voxel_size: Spacing | None,
    chunks: tuple[int, int, int],
    provenance: Mapping[str, str] | None = None,
) -> None:
    """A new volume of zeros at `path` (in a folder of work in progress, renamed into place when
    complete by `replace_path`), to be filled by Z ranges through `planes_of`; `provenance` as in
    `volume_writer`."""
    kind = family(path)
    if kind == "tiff":
        from voxseg.io.tiff import PlanesWriter

        PlanesWriter(path, shape, dtype, voxel_size, provenance)
    elif kind == "zarr":
        from voxseg.io.zarr_volume import ZarrWriter

        ZarrWriter(path, shape, dtype, voxel_size, chunks, provenance)
    elif kind == "hdf5":
        from voxseg.io.hdf5_volume import Hdf5Writer

        Hdf5Writer(path, shape, dtype, voxel_size, chunks, provenance).close()
    else:
        raise ValueError(f"{path}: no volume format has this suffix")


@contextmanager
def planes_of(path: Path) -> Iterator[PlanesOut]:
    """A volume `create_volume` made, open to write Z ranges for the block. Processes may each open
    it and write their own rows of chunks (Zarr) or planes (TIFF, on one machine); HDF5 takes one
    writer."""
    kind = family(path)
    if kind == "tiff":
        from voxseg.io.tiff import PlanesWriter

        yield PlanesWriter.existing(path)
    elif kind == "zarr":
        from voxseg.io.zarr_volume import ZarrWriter

        yield ZarrWriter.existing(path)
    else:
        from voxseg.io.hdf5_volume import Hdf5Writer

        writer = Hdf5Writer.existing(path)
        try:
            yield writer
        finally:
            writer.close()


def replace_path(new: Path, target: Path) -> None:
    """Move a finished volume (a file or a Zarr folder) into place, replacing `target` if present."""
    if new.is_dir():
        _replace_folder(new, target)
    else:
        make_public(new)
        os.replace(new, target)


def _replace_folder(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing `target` is moved aside first and removed after."""
    make_public(new, folder=True)
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.replace(target, old / target.name)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
