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
    RandGaussianSmoothd,
    Randomizable,
    RandRotate90d,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandSimulateLowResolutiond,
    RandZoomd,
)

KEYS = ("image", "label")
#: share of patches that are elastically deformed (the one costly augmentation)
ELASTIC_PROB = 0.15


class Augmentation:
    """nnU-Net's augmentation, from MONAI's transforms: flips, 90° rotations, zoom, elastic deformation
    with rotation and scaling; Gaussian noise and blur, brightness, contrast, simulated low resolution
    and gamma (also of the inverted image), each with nnU-Net's probability.

    Intensity augmentation is what lets a model trained on one sample segment another, whose
    nuclei are brighter or dimmer, blurrier or noisier (benchmarks/accuracy.py, QCANet, trained on one
    embryo and scored on the other, seeds 0-1, with Dice + cross-entropy: mean held-out Dice 0.865
    against 0.853 with the flips, ±10 % scale/shift, gamma and noise used before).

    Elastic deformation is the only costly transform (2 s for a 128³ patch on one CPU core, about a
    millisecond on a GPU), so it runs on a fraction of patches; the rest cost about 5 ms per 64³ patch
    on a CPU core. Every transform works where its input lies, CPU or GPU. Each call is seeded so a
    sample's augmentation does not depend on which worker process or device draws it.
    """

    def __init__(self, patch_size: tuple[int, int, int]) -> None:
        spatial = [RandFlipd(KEYS, prob=0.5, spatial_axis=axis) for axis in range(3)]
        if patch_size[1] == patch_size[2]:  # rotating Y/X keeps the shape only for square patches
            spatial.append(RandRotate90d(KEYS, prob=0.5, spatial_axes=(1, 2)))
        zoom = RandZoomd(KEYS, prob=0.2, min_zoom=0.7, max_zoom=1.4, mode=("trilinear", "nearest"))
        spatial.append(zoom)
        elastic = Rand3DElasticd(
            KEYS,
            sigma_range=(5, 8),
            magnitude_range=(50, 150),
            prob=1.0,
            rotate_range=(0.0, 0.0, 0.5),  # radians, about Z: the axis whose rotation keeps the voxels
            scale_range=(0.25, 0.25, 0.25),
            mode=("bilinear", "nearest"),
            padding_mode="reflection",
        )
        # Chosen here rather than by its own `prob`: skipped that way, Rand3DElasticd still draws its
        # random field and resamples both volumes through an identity grid (~35 ms per 64³ patch).
        spatial.append(OneOf([elastic, Identityd(KEYS)], weights=[ELASTIC_PROB, 1 - ELASTIC_PROB]))
        blur = (0.5, 1.0)  # voxels
        intensity = [
            RandGaussianNoised("image", std=0.1, prob=0.15),
            RandGaussianSmoothd("image", sigma_x=blur, sigma_y=blur, sigma_z=blur, prob=0.2),
            RandScaleIntensityd("image", factors=0.25, prob=0.15),  # brightness
            RandScaleIntensityFixedMeand("image", factors=0.25, preserve_range=True, prob=0.15),  # contrast
            RandSimulateLowResolutiond("image", zoom_range=(0.5, 1.0), prob=0.25),
            RandAdjustContrastd("image", gamma=(0.7, 1.5), invert_image=True, retain_stats=True, prob=0.1),
            RandAdjustContrastd("image", gamma=(0.7, 1.5), retain_stats=True, prob=0.3),
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
    RandomState for each of the 20 transforms (0.2 ms each)."""
    if isinstance(transform, Compose):  # OneOf too
        Randomizable.set_random_state(transform, state=state)
        for child in transform.transforms:
            _share_random_state(child, state)
    elif isinstance(transform, Randomizable):
        transform.set_random_state(state=state)  # MONAI's wrappers pass it on to what they wrap


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    as_plain = getattr(tensor, "as_tensor", None)
    return (as_plain() if as_plain else torch.as_tensor(tensor)).float()
