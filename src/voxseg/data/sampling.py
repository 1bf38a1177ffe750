"""Patch sampling that favours foreground, as nnU-Net does, and the torch Dataset serving patches."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from voxseg.data.checks import slabs
from voxseg.data.labels import FOREGROUND, IGNORED
from voxseg.data.volumes import OnDisk, Volume

#: at most this many voxels are scanned per volume to find patch centres (strided beyond it)
_MAX_SCANNED_VOXELS = 16_000_000

Corner = tuple[int, int, int]


def candidate_centres(label: np.ndarray | OnDisk) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 3) coordinates of foreground voxels, and of annotated voxels when some are not annotated
    (None for dense labels); on a coarser grid for very large volumes, read slab by slab."""
    stride = 1
    while label.size / stride**3 > _MAX_SCANNED_VOXELS:
        stride += 1
    foreground, annotated, starts = [], [], []
    for zs in slabs(label.shape):
        first = -(-zs.start // stride) * stride  # the slab's first Z on the grid
        if first >= zs.stop:
            continue
        coarse = np.asarray(label[first : zs.stop])[::stride, ::stride, ::stride]
        foreground.append(_grid_points(coarse == FOREGROUND, stride, first))
        annotated.append(coarse != IGNORED)  # a byte per grid point; points only if some are not
        starts.append(first)
    sparse = not all(mask.all() for mask in annotated)
    annotated_points = None
    if sparse:
        annotated_points = np.concatenate(
            [_grid_points(m, stride, z) for m, z in zip(annotated, starts, strict=True)]
        )
    return np.concatenate(foreground), annotated_points


def _grid_points(mask: np.ndarray, stride: int, z0: int) -> np.ndarray:
    """Volume coordinates (int32) of the true grid points of a coarse slab starting at Z `z0`."""
    points = np.argwhere(mask).astype(np.int32)
    points *= stride
    points[:, 0] += z0
    return points


class PatchSampler:
    """Chooses where patches are cut, per epoch and reproducibly from the seed.

    Each patch is centred on a random foreground voxel with probability `foreground_share`
    (nnU-Net forces 0.33), otherwise placed uniformly, or, in a sparsely annotated volume, centred
    on a random annotated voxel (a patch of unannotated voxels teaches nothing). Volumes must
    already be >= the patch size.
    """

    def __init__(
        self,
        volumes: list[Volume],
        patch_size: tuple[int, int, int],
        samples_per_image: int | Sequence[int],
        foreground_share: float,
        seed: int,
    ) -> None:
        for volume in volumes:
            if any(v < p for v, p in zip(volume.shape, patch_size, strict=True)):
                raise ValueError(f"{volume.name} {volume.shape} is smaller than the patch {patch_size}")
        self.shapes = [v.shape for v in volumes]
        self.points, self.annotated = zip(*(candidate_centres(v.label) for v in volumes), strict=True)
        self.patch_size = patch_size
        each = samples_per_image  # the same count for every volume, or one count per volume
        self.samples = [each] * len(volumes) if isinstance(each, int) else list(each)
        self.foreground_share = foreground_share
        self.seed = seed

    def __len__(self) -> int:
        return sum(self.samples)

    def plan(self, epoch: int) -> list[tuple[int, Corner]]:
        """(volume index, patch corner) for every sample of this epoch."""
        rng = np.random.default_rng([self.seed, epoch])
        plan = []
        half = np.array(self.patch_size) // 2
        for index, (shape, points, annotated, samples) in enumerate(
            zip(self.shapes, self.points, self.annotated, self.samples, strict=True)
        ):
            highest = np.array(shape) - np.array(self.patch_size)
            for _ in range(samples):
                if len(points) and rng.random() < self.foreground_share:
                    corner = np.clip(points[rng.integers(len(points))] - half, 0, highest)
                elif annotated is not None:
                    corner = np.clip(annotated[rng.integers(len(annotated))] - half, 0, highest)
                else:
                    corner = np.array([rng.integers(h + 1) for h in highest])
                plan.append((index, tuple(int(c) for c in corner)))
        return plan


class EpochOrder(Sampler):
    """Shuffled keys `(epoch, index)`; the engine sets `epoch`, so persistent workers need no state.

    Under data parallelism (`world` > 1 processes, `batch` patches each per step) the epoch's one
    permutation is cut into global batches of `batch × world` and this `rank` takes its slice of each,
    so one step of W processes sees the patches one step of a single process with batch B×W would.
    The order is padded with its first patches to whole global batches (as PyTorch's
    DistributedSampler pads), since every process must take the same number of steps.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1, batch: int = 1) -> None:
        self.size = size
        self.seed = seed
        self.rank, self.world, self.batch = rank, world, batch
        self.epoch = 0

    def _order(self) -> np.ndarray:
        order = np.random.default_rng([self.seed, self.epoch, 1]).permutation(self.size)
        if self.world == 1:
            return order
        chunk = self.batch * self.world
        order = np.resize(order, -(-self.size // chunk) * chunk)  # repeats the first patches
        return order.reshape(-1, self.world, self.batch)[:, self.rank].ravel()

    def __len__(self) -> int:
        if self.world == 1:
            return self.size
        chunk = self.batch * self.world
        return -(-self.size // chunk) * self.batch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, int(i)) for i in self._order()])


def augmentation_seed(seed: int, epoch: int, item: int) -> int:
    """The seed of one sample's augmentation: the same whichever process or device augments it."""
    return int(np.random.SeedSequence([seed, epoch, item]).generate_state(1)[0])


class PatchDataset(Dataset):
    """Cuts the patches of an epoch's plan, and augments them when given `augment`.

    Items are `(image, label, seed)`, the same for a key in any worker; `seed` is the sample's
    augmentation seed, so augmentation deferred to the GPU (`Augmentation.batch`) draws the same
    changes a worker would have.
    """

    def __init__(
        self,
        volumes: list[Volume],
        sampler: PatchSampler,
        augment: Callable[[dict, int], dict] | None = None,
    ) -> None:
        self.volumes = volumes
        self.sampler = sampler
        self.augment = augment
        self._plans: dict[int, list[tuple[int, Corner]]] = {}

    def __len__(self) -> int:
        return len(self.sampler)

    def _plan(self, epoch: int) -> list[tuple[int, Corner]]:
        if epoch not in self._plans:
            self._plans = {epoch: self.sampler.plan(epoch)}  # keep only the current epoch
        return self._plans[epoch]

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        epoch, item = key
        index, corner = self._plan(epoch)[item]
        volume = self.volumes[index]
        window = tuple(slice(c, c + p) for c, p in zip(corner, self.sampler.patch_size, strict=True))
        label = volume.label[window].astype(np.float32)[None]
        if volume.distance is not None:  # the second target: (classes, distance) channels
            label = np.concatenate([label, np.asarray(volume.distance[window], np.float32)[None]])
        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(volume.image[window]))[None],
            "label": torch.from_numpy(label),
        }
        seed = augmentation_seed(self.sampler.seed, epoch, item)
        if self.augment is not None:
            sample = self.augment(sample, seed)
        return sample["image"].contiguous(), sample["label"].contiguous(), seed
