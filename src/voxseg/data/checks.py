"""Read an image/label pair and check it before any training: every problem names its file.

The checks run on Z slabs, so they cost the same memory for a volume on disk of any size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from voxseg.data.discovery import Pair
from voxseg.data.labels import FOREGROUND, IGNORED, LabelMap
from voxseg.errors import DataError
from voxseg.io.formats import Spacing, VolumeFile, open_volume, z_slabs

#: a check reads at most this many voxels at a time
SLAB_VOXELS = 16_000_000
#: a label whose annotated voxels are less than this share foreground, or background, is named
ONE_CLASS_SHARE = 0.001


@dataclass(frozen=True)
class Reading:
    """How the files of a data set are read: dataset keys (HDF5/Zarr), the OME-Zarr level, what label
    values mean, and a voxel size that overrides the files' metadata."""

    image_key: str | None = None
    label_key: str | None = None
    level: int = 0
    label_map: LabelMap = LabelMap()
    spacing: Spacing | None = None
    channel: int | None = None  # of multichannel images (labels have one)
    timepoint: int | None = None  # of time series (labels too, when they are one)
    series: int | None = None  # the image of TIFFs holding several (labels too, when they do)


def slabs(shape: tuple[int, ...]) -> Iterator[slice]:
    """Z ranges of at most about `SLAB_VOXELS` voxels covering a volume of `shape`."""
    return (slice(z0, z1) for z0, z1 in z_slabs(shape, SLAB_VOXELS))


def open_checked(
    path,
    key: str | None,
    level: int,
    channel: int | None = None,
    timepoint: int | None = None,
    series: int | None = None,
) -> VolumeFile:
    volume = open_volume(path, key, level, channel, timepoint, series)
    if min(volume.shape) < 2:
        raise DataError(f"{path}: a side of shape {volume.shape} is shorter than 2 voxels")
    return volume


def open_image(path, reading: Reading) -> VolumeFile:
    """An image opened as `reading` says: its dataset, level, channel and time point."""
    return open_checked(
        path, reading.image_key, reading.level, reading.channel, reading.timepoint, reading.series
    )


def read_volume(path, key: str | None = None, level: int = 0) -> np.ndarray:
    """Read one volume whole as a Z×Y×X array (singleton axes, e.g. a 1-channel axis, dropped)."""
    return open_checked(path, key, level)[:]


def check_image(path, image: np.ndarray) -> None:
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise DataError(f"{path}: contains NaN or Inf values")


def check_volume_values(volume: VolumeFile, rank: int = 0, world: int = 1) -> None:
    """Refuse a volume a model cannot be applied to: a side of length 0, or NaN/Inf values (read in
    slabs of bounded size; integer volumes hold neither). Ranks of a job read every `world`-th slab."""
    if 0 in volume.shape:
        raise DataError(f"{volume.path}: is empty (shape {tuple(volume.shape)})")
    if not np.issubdtype(volume.dtype, np.floating):
        return
    for z0, z1 in z_slabs(volume.shape, SLAB_VOXELS)[rank::world]:
        if not np.isfinite(volume[z0:z1]).all():
            raise DataError(f"{volume.path}: contains NaN or Inf values (planes {z0}-{z1 - 1})")


def check_label(path, label: np.ndarray) -> None:
    """Raise for label values that are no class: fractions, negatives, NaN."""
    if np.issubdtype(label.dtype, np.complexfloating):
        raise DataError(f"{path}: labels must be integers, got {label.dtype}")
    if np.issubdtype(label.dtype, np.floating):
        if not np.isfinite(label).all():
            raise DataError(f"{path}: labels contain NaN or Inf values")
        fractional = label[label != np.round(label)]
        if fractional.size:
            raise DataError(f"{path}: labels must be integers (found {fractional.flat[0]:g})")
    if label.dtype != bool and label.size and label.min() < 0:
        raise DataError(f"{path}: labels must be >= 0 (found {label.min():g})")


def label_classes(path, raw: np.ndarray, label_map: LabelMap) -> np.ndarray:
    """Checked label values as classes (uint8: background, foreground, ignored)."""
    check_label(path, raw)
    return label_map.classes(raw, path)


def class_warnings(path, classes_counts: tuple[int, int], label_map: LabelMap) -> list[str]:
    """A label with no annotated voxel is an error; one whose annotated voxels are (almost) all one
    class a warning naming the share: a wrong file, an inverted mask, or a background value the map
    reads as foreground, which would train a network to answer one class everywhere."""
    foreground, annotated = classes_counts
    if annotated == 0:
        raise DataError(
            f"{path}: no voxel is annotated (every value maps to ignore in --label-map {label_map})"
        )
    minority = min(foreground, annotated - foreground)
    if foreground == 0:
        return [f"{path}: label has no foreground voxels (0 of {annotated}; it only teaches background)"]
    if minority == 0:
        return [
            f"{path}: every annotated voxel is foreground ({annotated}; it only teaches foreground): if a "
            f"value marks background, name it in --label-map (read as {label_map})"
        ]
    if minority < ONE_CLASS_SHARE * annotated:
        which = "foreground" if minority == foreground else "background"
        return [
            f"{path}: only {100 * minority / annotated:.2g}% of its annotated voxels are {which} "
            f"({minority} of {annotated}): is it the right label file?"
        ]
    return []


def counts(classes: np.ndarray) -> tuple[int, int]:
    """(foreground voxels, annotated voxels) of a class array."""
    return int(np.count_nonzero(classes == FOREGROUND)), int(
        classes.size - np.count_nonzero(classes == IGNORED)
    )


def axes_order_hint(shape: tuple[int, ...], other: tuple[int, ...]) -> str:
    """What a shape mismatch may mean when both files hold the same sides."""
    if sorted(shape) == sorted(other):
        return " (the same sides in another order: the two files were saved with their axes differently)"
    return ""


def open_pair(pair: Pair, reading: Reading) -> tuple[VolumeFile, VolumeFile]:
    """Both files opened (headers only) with their shapes checked against each other."""
    image = open_image(pair.image, reading)
    label = open_checked(
        pair.label, reading.label_key, reading.level, None, reading.timepoint, reading.series
    )
    if label.shape != image.shape:
        raise DataError(
            f"{pair.label}: shape {label.shape} does not match its image {pair.image.name} "
            f"{image.shape}{axes_order_hint(label.shape, image.shape)}"
        )
    return image, label


def load_pair(pair: Pair, reading: Reading | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Image (as read) and label classes (uint8), read whole and checked, plus warnings."""
    reading = reading or Reading()
    image_file, label_file = open_pair(pair, reading)
    image = image_file[:]
    check_image(pair.image, image)
    classes = label_classes(pair.label, label_file[:], reading.label_map)
    return image, classes, class_warnings(pair.label, counts(classes), reading.label_map)


def scan_pair(image: VolumeFile, label: VolumeFile, pair: Pair, label_map: LabelMap) -> list[str]:
    """The checks of `load_pair` for volumes left on disk, slab by slab."""
    total = (0, 0)
    for zs in slabs(image.shape):
        check_image(pair.image, image[zs])
        found = counts(label_classes(pair.label, label[zs], label_map))
        total = (total[0] + found[0], total[1] + found[1])
    return class_warnings(pair.label, total, label_map)
