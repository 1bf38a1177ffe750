"""Layers open in napari become a dataset on disk, so a run from layers is reproducible and resumable."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import tifffile

from voxseg.errors import DataError


def safe_name(name: str) -> str:
    """A layer name as a file name: letters, digits, '-', '_' and '.' only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "layer"


def write_layer_dataset(
    results: Path, image_name: str, image: np.ndarray, label_name: str, label: np.ndarray
) -> tuple[Path, Path]:
    """Write `<results>/layer-data/<time>/{images,labels}/` and return both folders.

    The volume and its labels are written as they are; the usual checks (3D, shapes, label values)
    then run on them exactly as on any folder. Nothing is overwritten: each Start gets a new folder.
    """
    image, label = np.asarray(image), np.asarray(label)
    if image.ndim != 3:
        raise DataError(f"image layer {image_name!r}: not a 3D volume (shape {image.shape})")
    if label.shape != image.shape:
        raise DataError(
            f"labels layer {label_name!r}: shape {label.shape} does not match image layer "
            f"{image_name!r} {image.shape}"
        )
    base = Path(results) / "layer-data" / time.strftime("%Y%m%d-%H%M%S")
    root, n = base, 1
    while root.exists():
        n += 1
        root = base.with_name(f"{base.name}_{n}")
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    stem = safe_name(image_name)
    tifffile.imwrite(images / f"{stem}.tif", image)
    tifffile.imwrite(labels / f"{stem}_label.tif", label)
    return images, labels
