"""`--resample isotropic`: cubic voxels for training, and prediction's way there and back.

Light-sheet and confocal stacks often step 2-5× coarser in Z than in X/Y, so a nucleus is a flat
disc to the network and a 3³ kernel mixes far more tissue along Z. Resampling every volume to cubic
voxels of one side (the median over the training volumes of their finest side, as nnU-Net takes a
median spacing) makes objects the same shape in every direction and the same size across volumes
of different voxel sizes. Images are interpolated linearly, label classes by nearest neighbour
(scipy.ndimage.zoom); prediction resamples its input the same way and the probabilities back.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from voxseg.data.volumes import Volume
from voxseg.errors import DataError
from voxseg.io.formats import Spacing


def isotropic_side(volumes: list[Volume]) -> float:
    """The cube side (µm): the median of the volumes' finest sides. Every volume needs a voxel size."""
    unknown = [v.name for v in volumes if v.voxel_size is None]
    if unknown:
        raise DataError(
            f"--resample isotropic: {', '.join(unknown[:3])} has no voxel size in its metadata; give "
            "--spacing Z,Y,X"
        )
    return float(np.median([min(v.voxel_size) for v in volumes if v.voxel_size is not None]))


def factors(spacing: Spacing, side: float) -> tuple[float, float, float]:
    return (spacing[0] / side, spacing[1] / side, spacing[2] / side)


def resample_volume(volume: Volume, side: float) -> Volume:
    """The volume on cubic voxels of `side` µm (it must be held in memory)."""
    assert volume.voxel_size is not None
    zoom = factors(volume.voxel_size, side)
    if all(abs(z - 1) < 1e-6 for z in zoom):  # already there: only the recorded size is rounded
        return dataclasses.replace(volume, voxel_size=(side, side, side))
    if volume.on_disk:
        raise DataError(
            f"--resample isotropic: {volume.name} is too large to hold in memory (it is read patch by "
            "patch); resample it beforehand or train without --resample"
        )
    image = ndimage.zoom(np.asarray(volume.image), zoom, order=1, grid_mode=True, mode="nearest")
    label = ndimage.zoom(np.asarray(volume.label), zoom, order=0, grid_mode=True, mode="nearest")
    distance = None
    if volume.distance is not None:
        distance = ndimage.zoom(np.asarray(volume.distance), zoom, order=1, grid_mode=True, mode="nearest")
    return Volume(volume.name, image.astype(np.float32), label, volume.origin, (side, side, side), distance)


def to_isotropic(image: np.ndarray, spacing: Spacing, side: float) -> np.ndarray:
    """An input volume on cubic voxels of `side` µm (linear interpolation), as training saw it."""
    return ndimage.zoom(
        image.astype(np.float32), factors(spacing, side), order=1, grid_mode=True, mode="nearest"
    )


def back_to(probability: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Probabilities on the cubic grid, resampled (linearly) to the input's own `shape`."""
    zoom = tuple(want / have for want, have in zip(shape, probability.shape, strict=True))
    out = ndimage.zoom(probability, zoom, order=1, grid_mode=True, mode="nearest")
    assert out.shape == tuple(shape), (out.shape, shape)
    return out
