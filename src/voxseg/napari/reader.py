"""napari opens HDF5 and (OME-)Zarr volumes through voxseg's reading layer, with their voxel size as the
layer's scale: napari reads neither HDF5 nor a Zarr's voxel size on its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.errors import VoxsegError
from voxseg.inference.paths import OUTPUT_SUFFIXES
from voxseg.io.formats import family, open_volume, stem

#: a volume up to this size is read whole; a larger one is handed to napari as stored, read lazily
WHOLE_BYTES = 2 * 2**30
#: what `voxseg predict` writes: shown as labels layers
LABEL_KINDS = (OUTPUT_SUFFIXES["mask"], OUTPUT_SUFFIXES["labels"])

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2's reader hook: a reader for .h5/.hdf5 files and .zarr folders voxseg can open, else None."""
    if isinstance(path, list) or family(Path(path)) not in ("zarr", "hdf5"):
        return None
    try:
        open_volume(Path(path))
    except VoxsegError:
        return None  # several datasets, not 3D...: another reader may know better
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """One layer: an image, or labels for integer volumes named like voxseg's masks and labels."""
    assert isinstance(path, str)
    volume = open_volume(Path(path))
    scale = volume.voxel_size or (1.0, 1.0, 1.0)
    if volume.size * volume.dtype.itemsize <= WHOLE_BYTES or list(volume.axes) != sorted(volume.axes):
        data = volume[:]
    else:  # as stored, e.g. T, C, Z, Y, X with T and C of length 1: those get a scale of 1
        data = volume.stored_array
        stored_scale = [1.0] * len(data.shape)
        for axis, side in zip(volume.axes, scale, strict=True):
            stored_scale[axis] = side
        scale = tuple(stored_scale)
    name = stem(Path(path))
    is_labels = np.issubdtype(volume.dtype, np.integer) and name.endswith(LABEL_KINDS)
    metadata: dict[str, Any] = {"name": name}
    if volume.voxel_size is not None:
        metadata["scale"] = scale
    return [(data, metadata, "labels" if is_labels else "image")]
