"""Intensity normalisation, the same for training, validation and prediction: percentile clip, then
z-score, with statistics computed once per volume (never per patch, which would erase contrast) from
a bounded sample, so a volume larger than memory is never read whole for them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

#: at most this many voxels are read to estimate the statistics (strided beyond it)
NORMALISATION_SAMPLE = 16_000_000
#: percentiles the intensities are clipped to before z-scoring: robust to hot pixels, and high enough
#: that nuclei covering 2 % of a volume keep their contrast (CSBDeep's and StarDist's 1-99.8)
CLIP_PERCENTILES = (1.0, 99.8)


class Readable(Protocol):
    """A numpy array, or a volume file read by regions (`voxseg.io.formats.VolumeFile`)."""

    shape: tuple[int, ...]
    size: int

    def __getitem__(self, key: Any) -> np.ndarray: ...


def sample_stride(volume: Readable) -> int:
    """Every voxel of a small volume is the sample; beyond `NORMALISATION_SAMPLE` voxels, a grid with
    this stride along each axis."""
    stride = 1
    while volume.size / stride**3 > NORMALISATION_SAMPLE:
        stride += 1
    return stride


def sample_planes(volume: Readable, planes: Sequence[int], stride: int) -> np.ndarray:
    """The sample's voxels of `planes` (some of `range(0, Z, stride)`; ranks sharing a volume read a
    part each), stacked, copied (a strided view would keep its whole plane alive).

    Planes stored together (a Zarr or HDF5 chunk's depth, `plane_block`) are read together, in reads
    of at most `NORMALISATION_SAMPLE` voxels: one plane at a time would decompress every chunk once
    per sampled plane in it (a 256×512×512 Zarr in 64-plane chunks: 10.1 s, against 1.1 s)."""
    if not len(planes):
        return np.zeros((0, -(-volume.shape[1] // stride), -(-volume.shape[2] // stride)), np.float32)
    block = max(
        1, min(getattr(volume, "plane_block", 1), NORMALISATION_SAMPLE // (volume.shape[1] * volume.shape[2]))
    )
    runs: list[list[int]] = []
    for z in planes:
        if runs and z // block == runs[-1][0] // block:
            runs[-1].append(z)
        else:
            runs.append([z])
    parts = [np.asarray(volume[run[0] : run[-1] + 1])[::stride, ::stride, ::stride].copy() for run in runs]
    return np.concatenate(parts)


@dataclass(frozen=True)
class Normalisation:
    """Percentile clip, then z-score, with statistics from a bounded sample."""

    low: float
    high: float
    mean: float
    std: float

    @classmethod
    def of(cls, volume: Readable) -> Normalisation:
        """Statistics of `volume`, from every voxel when small or on a strided grid (plane by plane,
        so a large volume is never held whole)."""
        stride = sample_stride(volume)
        return cls.of_sample(sample_planes(volume, range(0, volume.shape[0], stride), stride))

    @classmethod
    def of_sample(cls, sample: np.ndarray) -> Normalisation:
        """Statistics of a sample (`sample_planes`; ranks sharing a volume each read a part)."""
        sample = sample.astype(np.float32, copy=False)
        low, high = (float(v) for v in np.percentile(sample, CLIP_PERCENTILES))
        clipped = np.clip(sample, low, high)
        std = float(clipped.std())
        return cls(low, high, float(clipped.mean()), std if std > 0 else 1.0)

    @classmethod
    def already_done(cls, image: np.ndarray) -> Normalisation:
        """For a volume normalised already: changes nothing, pads with the volume's minimum."""
        return cls(float(image.min()), float(image.max()), 0.0, 1.0)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        out = block.astype(np.float32)
        self.apply_in_place(out)
        return out

    def apply_in_place(self, block: np.ndarray) -> None:
        """Normalise a float32 array without temporaries (a window row of a large volume is 100+ MB)."""
        np.clip(block, self.low, self.high, out=block)
        block -= self.mean
        block /= self.std

    @property
    def padding(self) -> float:
        """What training pads with: the normalised minimum."""
        return (self.low - self.mean) / self.std


def normalise(image: np.ndarray) -> np.ndarray:
    """A whole in-memory volume, normalised (float32)."""
    return Normalisation.of(image)(image)
