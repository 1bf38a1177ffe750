"""Augmentation with MONAI dictionary transforms: the same spatial change for image and label."""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import (
    Compose,
    Identityd,
    OneOf,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandFlipd,
    RandGaussianNoised,
    Randomizable,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
)

KEYS = ("image", "label")
#: share of patches that are elastically deformed (the one costly augmentation)
ELASTIC_PROB = 0.15


class Augmentation:
    """Flips, 90° rotations, elastic deformation, intensity scale/shift, contrast and noise.

    Elastic deformation is the only costly one (2 s for a 128³ patch on one CPU core, about a
    millisecond on a GPU), so it runs on a fraction of patches; the rest are cheap tensor operations.
    Every transform works where its input lies, CPU or GPU. Each call is seeded so a sample's
    augmentation does not depend on which worker process or device draws it.
    """

    def __init__(self, patch_size: tuple[int, int, int]) -> None:
        spatial = [RandFlipd(KEYS, prob=0.5, spatial_axis=axis) for axis in range(3)]
        if patch_size[1] == patch_size[2]:  # rotating Y/X keeps the shape only for square patches
            spatial.append(RandRotate90d(KEYS, prob=0.5, spatial_axes=(1, 2)))
        elastic = Rand3DElasticd(
            KEYS,
            sigma_range=(5, 8),
            magnitude_range=(50, 150),
            prob=1.0,
            mode=("bilinear", "nearest"),
            padding_mode="reflection",
        )
        # Chosen here rather than by its own `prob`: skipped that way, Rand3DElasticd still draws its
        # random field and resamples both volumes through an identity grid (~35 ms per 64³ patch).
        spatial.append(OneOf([elastic, Identityd(KEYS)], weights=[ELASTIC_PROB, 1 - ELASTIC_PROB]))
        intensity = [
            RandScaleIntensityd("image", factors=0.1, prob=0.5),
            RandShiftIntensityd("image", offsets=0.1, prob=0.5),
            RandAdjustContrastd("image", gamma=(0.75, 1.5), prob=0.2),
            RandGaussianNoised("image", std=0.1, prob=0.2),
        ]
        self.transform = Compose(spatial + intensity, lazy=False)
        self.random = np.random.RandomState(0)
        _share_random_state(self.transform, self.random)

    def __call__(self, sample: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
        self.random.seed(seed % (2**32))
        out = self.transform(sample)
        # MONAI returns MetaTensors; plain tensors collate and pin faster and carry no metadata.
        return {key: _plain(out[key]) for key in KEYS}

    def batch(
        self, images: torch.Tensor, labels: torch.Tensor, seeds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a collated batch where it lies (on the GPU, after the copy), each sample by its seed."""
        samples = [
            self({"image": image, "label": label}, int(seed))
            for image, label, seed in zip(images, labels, seeds, strict=True)
        ]
        return torch.stack([s["image"] for s in samples]), torch.stack([s["label"] for s in samples])


def _share_random_state(transform: object, state: np.random.RandomState) -> None:
    """Make every random transform under `transform` draw from `state`, so one cheap re-seed
    per sample (2 µs) replaces MONAI's `Compose.set_random_state`, which builds a new
    RandomState for each of the 17 transforms (0.2 ms each: 4 ms of a 64³ patch's 12)."""
    if isinstance(transform, Compose):  # OneOf too
        Randomizable.set_random_state(transform, state=state)
        for child in transform.transforms:
            _share_random_state(child, state)
    elif isinstance(transform, Randomizable):
        transform.set_random_state(state=state)  # MONAI's wrappers pass it on to what they wrap


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    as_plain = getattr(tensor, "as_tensor", None)
    return (as_plain() if as_plain else torch.as_tensor(tensor)).float()
