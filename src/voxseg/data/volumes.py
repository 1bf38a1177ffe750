"""Training volumes: normalised once, held in memory when they fit, otherwise read patch by patch
from disk (Zarr, HDF5 and uncompressed TIFF allow it), and padded to what the model accepts."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from voxseg.data.checks import (
    Reading,
    check_image,
    class_warnings,
    counts,
    label_classes,
    open_image,
    open_pair,
    scan_pair,
)
from voxseg.data.discovery import Pair
from voxseg.data.labels import FOREGROUND, IGNORED
from voxseg.data.normalise import Normalisation, normalise
from voxseg.data.self_labels import CUT_QUANTILES, ncut_partition
from voxseg.io.formats import Spacing, VolumeFile, describe_spacing

log = logging.getLogger("voxseg")


class OnDisk:
    """A box of a volume file whose regions are converted as they are read (intensities normalised,
    label values mapped to classes); indexed like a numpy array of the box's shape."""

    ndim = 3

    def __init__(
        self,
        source: VolumeFile,
        convert: Callable[[np.ndarray], np.ndarray],
        box: tuple[slice, slice, slice] | None = None,
        hidden: tuple[tuple[slice, ...], ...] = (),
    ) -> None:
        self.source, self.convert = source, convert
        self.box = box or tuple(slice(0, side) for side in source.shape)
        self.hidden = hidden  # boxes of the source read as IGNORED (held out for validation)
        self.shape: tuple[int, int, int] = tuple(s.stop - s.start for s in self.box)  # type: ignore[assignment]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def region(self, index: tuple[slice, ...]) -> OnDisk:
        """A step-1 sub-box, still on disk."""
        box = []
        for outer, inner, side in zip(self.box, index, self.shape, strict=True):
            start, stop, _ = inner.indices(side)
            box.append(slice(outer.start + start, outer.start + stop))
        return OnDisk(self.source, self.convert, tuple(box), self.hidden)  # type: ignore[arg-type]

    def held_out(self, boxes: list[tuple[slice, ...]]) -> OnDisk:
        """This box with the label classes of `boxes` (in this box's coordinates) read as IGNORED."""
        shifted = tuple(
            tuple(slice(o.start + b.start, o.start + b.stop) for o, b in zip(self.box, box, strict=True))
            for box in boxes
        )
        return OnDisk(self.source, self.convert, self.box, self.hidden + shifted)  # type: ignore[arg-type]

    def __getitem__(self, key: Any) -> np.ndarray:
        parts = key if isinstance(key, tuple) else (key,)
        parts = parts + (slice(None),) * (3 - len(parts))
        shifted = []
        for outer, part, side in zip(self.box, parts, self.shape, strict=True):
            if isinstance(part, slice):
                start, stop, step = part.indices(side)
                shifted.append(slice(outer.start + start, outer.start + max(stop, start), 1))
                if step != 1:
                    raise IndexError("regions on disk are read with step 1")
            else:
                if not -side <= int(part) < side:
                    raise IndexError(f"index {part} is out of bounds for a side of {side}")
                shifted.append(outer.start + int(part) % side)
        converted = self.convert(self.source[tuple(shifted)])
        return self._hide(converted, shifted) if self.hidden else converted

    def _hide(self, region: np.ndarray, read: list[slice | int]) -> np.ndarray:
        """`region` (read at `read`, source coordinates) with the hidden boxes set to IGNORED."""
        region = region.copy()
        for box in self.hidden:
            inner = []
            for where, hidden in zip(read, box, strict=True):
                if isinstance(where, int):
                    if not hidden.start <= where < hidden.stop:
                        break
                    continue  # an integer index drops the axis
                start, stop = max(where.start, hidden.start), min(where.stop, hidden.stop)
                if start >= stop:
                    break
                inner.append(slice(start - where.start, stop - where.start))
            else:
                region[tuple(inner)] = IGNORED
        return region

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


@dataclass
class Volume:
    """A normalised image (float32) and its label classes (uint8: 0 background, 1 foreground,
    2 not annotated), same Z×Y×X shape; each a numpy array, or an `OnDisk` box read by patch. With
    instance labels and a network that learns them, `distance` is the second target: each nucleus's
    normalised distance to its own boundary (`data.distance`, float32)."""

    name: str
    image: np.ndarray | OnDisk
    label: np.ndarray | OnDisk
    origin: tuple[int, int, int] = (0, 0, 0)  # where this part starts in its file (a cut volume)
    voxel_size: Spacing | None = None
    distance: np.ndarray | OnDisk | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape)  # type: ignore[return-value]

    @property
    def on_disk(self) -> bool:
        return isinstance(self.image, OnDisk)

    def in_memory(self) -> Volume:
        """This volume with both arrays read (validation predicts whole volumes)."""
        if not self.on_disk:
            return self
        distance = None if self.distance is None else np.asarray(self.distance)
        return dataclasses.replace(
            self, image=np.asarray(self.image), label=np.asarray(self.label), distance=distance
        )

    def has_foreground(self) -> bool:
        from voxseg.data.checks import slabs

        return any((np.asarray(self.label[zs]) == FOREGROUND).any() for zs in slabs(self.shape))


def in_memory_bytes(volume: VolumeFile, distance: bool = False) -> int:
    """Memory a volume takes when held: a float32 image, a uint8 label and the float32 distance
    target when there is one, plus the file's own copy while it is normalised."""
    return volume.size * (4 + 1 + 4 * distance + volume.dtype.itemsize)


#: the labels an image without any gives itself: (normalised image, voxel size) -> (classes, share)
Partition = Callable[[np.ndarray, "Spacing | None"], tuple[np.ndarray, float]]


def load_volumes(
    pairs: list[Pair],
    reading: Reading | None = None,
    memory_budget: int | None = None,
    partition: Partition = ncut_partition,
    distance: bool = False,
    radius: float | None = None,
) -> tuple[list[Volume], list[str], list[str]]:
    """Open, check and normalise every pair: (volumes, warnings, notes); the first bad file raises
    DataError naming it. Volumes are held in memory while they fit in `memory_budget` bytes (all of
    them when None); the others stay on disk and are read patch by patch. An image without a label
    is held in memory and labelled by `partition`. With `distance`, each volume also gets the
    distance target of its instance labels (`data.distance`; `radius` is the typical nucleus's)."""
    reading = reading or Reading()
    volumes, warnings, notes = [], [], []
    held = 0
    for pair in pairs:
        if pair.label is None:
            volume, note = _self_labelled(pair, reading, partition)
            volumes.append(volume)
            notes.append(note)
            continue
        image_file, label_file = open_pair(pair, reading)
        spacing = reading.spacing or image_file.voxel_size or label_file.voxel_size
        need = in_memory_bytes(image_file, distance)
        lazy = image_file.lazy and label_file.lazy
        if lazy and memory_budget is not None and held + need > memory_budget:
            warnings += scan_pair(image_file, label_file, pair, reading.label_map)
            image = OnDisk(image_file, Normalisation.of(image_file))
            label = OnDisk(label_file, partial(reading.label_map.classes, path=pair.label))
            target = None
            if distance:
                target = OnDisk(label_file, partial(_distance_of, spacing=spacing, radius=radius))
            notes.append(
                f"data: {pair.name} ({need / 2**30:.1f} GiB in memory) is read patch by patch from disk"
            )
        else:
            raw = image_file[:]
            check_image(pair.image, raw)
            image = normalise(raw)
            del raw
            raw_label = label_file[:]
            label = label_classes(pair.label, raw_label, reading.label_map)
            target = _distance_of(raw_label, spacing, radius) if distance else None
            del raw_label
            warnings += class_warnings(pair.label, counts(label), reading.label_map)
            held += image.nbytes + label.nbytes + (0 if target is None else target.nbytes)
        volumes.append(Volume(pair.name, image, label, voxel_size=spacing, distance=target))
    sizes = {v.voxel_size for v in volumes}
    described = "; ".join(f"{v.name} {describe_spacing(v.voxel_size)}" for v in volumes[:3])
    if len(sizes) == 1:
        described = describe_spacing(sizes.pop()) + (" (--spacing)" if reading.spacing else "")
    notes.append(f"voxel size: {described}")
    return volumes, warnings, notes


def _distance_of(ids: np.ndarray, spacing: Spacing | None, radius: float | None) -> np.ndarray:
    """The distance target of instance labels (read patch by patch from disk, a patch's nuclei cut
    by its faces are continued past them as at the volume's faces)."""
    from voxseg.data.distance import normalised_distance

    return normalised_distance(ids, spacing, radius)


def _self_labelled(pair: Pair, reading: Reading, partition: Partition) -> tuple[Volume, str]:
    """An image alone, normalised, with the labels `partition` gives it; and a note saying their share."""
    image_file = open_image(pair.image, reading)
    spacing = reading.spacing or image_file.voxel_size
    raw = image_file[:]
    check_image(pair.image, raw)
    image = normalise(raw)
    del raw
    # the first minute of a WNet3D run (42 s per 100³ volume on 2 cores) is not silent
    log.info(
        "labels: %s partitions itself (the lowest N-cut of %d thresholds)...", pair.name, len(CUT_QUANTILES)
    )
    label, share = partition(image, spacing)
    note = f"labels: {pair.name} partitions itself, {100 * share:.1f} % foreground (lowest N-cut)"
    return Volume(pair.name, image, label, voxel_size=spacing), note


def pad_amounts(shape: tuple[int, ...], target: tuple[int, ...]) -> list[tuple[int, int]]:
    """Symmetric (before, after) padding per axis to reach at least `target`."""
    amounts = []
    for have, want in zip(shape, target, strict=True):
        extra = max(want - have, 0)
        amounts.append((extra // 2, extra - extra // 2))
    return amounts


def pad_volume(volume: Volume, target: tuple[int, ...]) -> Volume:
    """Pad to at least `target`: the image with its minimum (background-like), the label with 0."""
    amounts = pad_amounts(volume.shape, target)
    if not any(a or b for a, b in amounts):
        return volume
    volume = volume.in_memory()  # a volume thinner than a patch is small enough to hold
    image = np.pad(volume.image, amounts, mode="constant", constant_values=float(volume.image.min()))
    label = np.pad(volume.label, amounts, mode="constant", constant_values=0)
    distance = None if volume.distance is None else np.pad(volume.distance, amounts, mode="constant")
    return Volume(volume.name, image, label, voxel_size=volume.voxel_size, distance=distance)
