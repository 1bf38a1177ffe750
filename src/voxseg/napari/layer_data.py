"""Layers open in napari become a dataset on disk, so a run from layers is reproducible and resumable."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import tifffile

from voxseg.errors import DataError
from voxseg.runtime.files import numbered_path


def safe_name(name: str) -> str:
    """A layer name as a file name: letters, digits, '-', '_' and '.' only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "layer"


def not_a_volume(name: str, shape: tuple[int, ...], rgb: bool = False) -> str:
    """Why a layer is no Z×Y×X volume, and what to do about it."""
    if rgb:
        return f"image layer {name!r} is an RGB image; voxseg segments one-channel 3D volumes"
    if len(shape) > 3:
        return (
            f"image layer {name!r} has {len(shape)} axes (shape {shape}): split its channels or time points "
            "into layers (right-click the layer: Split Stack) and choose one"
        )
    return f"image layer {name!r} is not a 3D volume (shape {shape}); voxseg segments Z×Y×X volumes"


def layer_problems(
    image_name: str, image_shape: tuple[int, ...], label_name: str, label_shape: tuple[int, ...]
) -> dict[str, str]:
    """What makes an image layer and a labels layer unusable together: `image_layer`/`label_layer` ->
    message (the widget shows them as you choose; Start refuses them)."""
    if len(image_shape) != 3:
        return {"image_layer": not_a_volume(image_name, tuple(image_shape))}
    if tuple(label_shape) != tuple(image_shape):
        return {
            "label_layer": f"labels layer {label_name!r}: shape {label_shape} does not match image layer "
            f"{image_name!r} {image_shape}"
        }
    return {}


def write_layer_dataset(
    results: Path,
    image_name: str,
    image: np.ndarray,
    label_name: str | None,
    label: np.ndarray | None,
    scale: tuple[float, ...] = (1.0, 1.0, 1.0),
) -> tuple[Path, Path | None]:
    """Write `<results>/layer-data/<time>/{images,labels}/` and return both folders (no labels folder
    when there is no label layer: WNet3D trains on the image alone).

    The volume and its labels are written as they are, with the image layer's scale as their voxel
    size (OME metadata) unless it is napari's default of 1; the usual checks (label values,
    foreground) then run on them exactly as on any folder. Nothing is overwritten: each Start gets a
    new folder.
    """
    image = np.asarray(image)
    label = image if label is None else np.asarray(label)
    problems = layer_problems(image_name, image.shape, label_name or image_name, label.shape)
    if problems:
        raise DataError(next(iter(problems.values())))
    root = numbered_path(Path(results) / "layer-data" / time.strftime("%Y%m%d-%H%M%S"))
    images = root / "images"
    images.mkdir(parents=True)
    stem = safe_name(image_name)
    _write(images / f"{stem}.tif", image, scale)
    if label_name is None:
        return images, None
    labels = root / "labels"
    labels.mkdir()
    _write(labels / f"{stem}_label.tif", label, scale)
    return images, labels


#: the pixel types OME metadata can describe (not 64-bit integers nor float16)
_OME_TYPES = {"int8", "int16", "int32", "uint8", "uint16", "uint32", "float32", "float64", "bool"}


def _write(path: Path, array: np.ndarray, scale: tuple[float, ...]) -> None:
    """A TIFF carrying the layer's scale as its voxel size (OME), unless the scale is napari's default
    of 1 or the pixel type has no OME name (then a plain TIFF: the voxel size stays unknown)."""
    sides = [float(side) for side in scale[-3:]]
    if array.dtype.name not in _OME_TYPES or all(abs(side - 1.0) < 1e-9 for side in sides):
        tifffile.imwrite(path, array)
        return
    metadata = {
        "axes": "ZYX",
        **{f"PhysicalSize{axis}": side for axis, side in zip("ZYX", sides, strict=True)},
    }
    tifffile.imwrite(path, array, ome=True, metadata=metadata)
