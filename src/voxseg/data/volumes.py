"""Volumes held in memory once: normalised a single time, padded to what the model accepts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voxseg.data.checks import load_pair
from voxseg.data.discovery import Pair
from voxseg.errors import DataError

#: percentiles the intensities are clipped to before z-scoring (robust to hot pixels)
CLIP_PERCENTILES = (0.5, 99.5)


@dataclass
class Volume:
    """A normalised image (float32) and its binary foreground mask (uint8), same Z×Y×X shape."""

    name: str
    image: np.ndarray
    label: np.ndarray
    origin: tuple[int, int, int] = (0, 0, 0)  # where this part starts in its file (a cut volume)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.image.shape)  # type: ignore[return-value]


def normalise(image: np.ndarray) -> np.ndarray:
    """Percentile clip then z-score, once per volume (never per patch, which would erase contrast)."""
    image = image.astype(np.float32, copy=False)
    low, high = np.percentile(image, CLIP_PERCENTILES)
    clipped = np.clip(image, low, high)
    std = float(clipped.std())
    return ((clipped - clipped.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def load_volumes(pairs: list[Pair]) -> tuple[list[Volume], list[str]]:
    """Read, check and normalise every pair; the first bad file raises DataError naming it."""
    volumes, warnings = [], []
    for pair in pairs:
        image, label, pair_warnings = load_pair(pair)
        volumes.append(Volume(pair.name, normalise(image), label))
        warnings.extend(pair_warnings)
    return volumes, warnings


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
    image = np.pad(volume.image, amounts, mode="constant", constant_values=float(volume.image.min()))
    label = np.pad(volume.label, amounts, mode="constant", constant_values=0)
    return Volume(volume.name, image, label)


def split_volume(volume: Volume, train_fraction: float, min_side: int) -> tuple[Volume, Volume, str]:
    """Cut one volume along its longest axis into a training part and a validation part."""
    axis = int(np.argmax(volume.shape))
    side = volume.shape[axis]
    cut = min(max(round(side * train_fraction), min_side), side - min_side)
    if cut < min_side:
        raise DataError(
            f"{volume.name}: the only volume ({volume.shape}) is too small to cut into training and "
            f"validation parts of at least {min_side} voxels; give --val-images/--val-labels"
        )
    index = [slice(None)] * 3
    index[axis] = slice(0, cut)
    head = tuple(index)
    index[axis] = slice(cut, side)
    tail = tuple(index)
    train = Volume(volume.name + f"[{'ZYX'[axis]}<{cut}]", volume.image[head], volume.label[head])
    origin = [0, 0, 0]
    origin[axis] = cut
    val_name = volume.name + f"[{'ZYX'[axis]}>={cut}]"
    val = Volume(val_name, volume.image[tail], volume.label[tail], (origin[0], origin[1], origin[2]))
    how = (
        f"only one volume: validation is the last {side - cut} of {side} voxels along "
        f"{'ZYX'[axis]} of {volume.name}, training the first {cut}"
    )
    return train, val, how


def split_volumes(
    volumes: list[Volume], train_fraction: float, seed: int, min_side: int
) -> tuple[list[Volume], list[Volume], str]:
    """Seeded shuffle, then at least one volume on each side; one volume is cut in two."""
    if len(volumes) == 1:
        train, val, how = split_volume(volumes[0], train_fraction, min_side)
        return [train], [val], how
    order = np.random.default_rng(seed).permutation(len(volumes))
    n_train = min(max(round(len(volumes) * train_fraction), 1), len(volumes) - 1)
    train = [volumes[i] for i in order[:n_train]]
    val = [volumes[i] for i in order[n_train:]]
    how = (
        f"{len(train)} volume(s) for training, {len(val)} for validation "
        f"(train fraction {train_fraction:g}, shuffled with seed {seed}): validation = "
        + ", ".join(v.name for v in val)
    )
    return train, val, how
