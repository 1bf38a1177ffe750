"""Read a pair of TIFFs and check it before any training: every problem names its file."""

from __future__ import annotations

import numpy as np
import tifffile

from voxseg.data.discovery import Pair
from voxseg.errors import DataError


def read_volume(path) -> np.ndarray:
    """Read one TIFF as a Z×Y×X array; singleton axes (e.g. a 1-channel axis) are dropped."""
    try:
        array = tifffile.imread(path)
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise DataError(f"{path}: cannot read as TIFF ({type(exc).__name__}: {exc})") from None
    array = np.asarray(array)
    if array.ndim > 3:
        array = array.squeeze()
    if array.ndim != 3:
        raise DataError(f"{path}: not a 3D volume (shape {array.shape}); voxseg needs Z×Y×X volumes")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{path}: unsupported pixel type {array.dtype}")
    if min(array.shape) < 2:
        raise DataError(f"{path}: a side of shape {array.shape} is shorter than 2 voxels")
    return array


def check_image(path, image: np.ndarray) -> None:
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise DataError(f"{path}: contains NaN or Inf values")


def check_label(path, label: np.ndarray) -> list[str]:
    """Raise for unusable labels; return warnings (e.g. no foreground) for the log."""
    if np.issubdtype(label.dtype, np.complexfloating):
        raise DataError(f"{path}: labels must be integers, got {label.dtype}")
    if np.issubdtype(label.dtype, np.floating):
        if not np.isfinite(label).all():
            raise DataError(f"{path}: labels contain NaN or Inf values")
        fractional = label[label != np.round(label)]
        if fractional.size:
            raise DataError(f"{path}: labels must be integers (found {fractional.flat[0]:g})")
    if label.dtype != bool and label.min() < 0:
        raise DataError(f"{path}: labels must be >= 0 (found {label.min():g})")
    if not label.any():
        return [f"{path}: label has no foreground voxels (it only teaches background)"]
    return []


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Image (as read) and binary foreground mask (uint8: any label > 0), plus warnings."""
    image = read_volume(pair.image)
    check_image(pair.image, image)
    label = read_volume(pair.label)
    if label.shape != image.shape:
        raise DataError(
            f"{pair.label}: shape {label.shape} does not match its image {pair.image.name} {image.shape}"
        )
    warnings = check_label(pair.label, label)
    return image, (label > 0).astype(np.uint8), warnings
