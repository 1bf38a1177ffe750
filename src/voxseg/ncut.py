"""The soft normalised cut of W-Net (Xia & Kulis 2017) in napari-cellseg3d's class-mean form.

Written here because no maintained library has a 3D soft N-cut: MONAI has none, and
napari-cellseg3d's (`models/wnet/soft_Ncuts.py`) lives inside a napari plugin. The pairwise form
(each voxel against its neighbours) was measured too: a hard partition of QCANet at the nuclei's
edges scored no better than a cut through the background (docs/self_supervised.md); the class-mean
form gives the partition with the truth's 2-4 % foreground its lowest value.

For class k with soft assignment p_k over a patch x (scaled to [0, 100]):

    mu_k     = sum(p_k x) / sum(p_k)                     the class's mean intensity
    w        = exp(-((x - mu_k)^2)^2 / sigma_i^2)        how much a voxel looks like the class
    assoc_k  = sum(p_k G*(p_k w)) / sum(p_k G*w)         G: a Gaussian of sigma_x, radius voxels
    N-cut    = K - sum_k assoc_k                          0 for a perfect partition, K at worst
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F

#: napari-cellseg3d's scale: each patch min-max to [0, 100], where its sigma_i = 1 was chosen
NCUT_RANGE = 100.0


@cache
def _gaussian(radius: int, sigma_x: float) -> torch.Tensor:
    """One axis of the Gaussian, peak 1 (the 3D kernel is its outer product)."""
    side = torch.arange(-radius, radius + 1, dtype=torch.float32)
    return torch.exp(-(side**2) / (2 * sigma_x**2))


def _smoothed(volume: torch.Tensor, radius: int, sigma_x: float) -> torch.Tensor:
    """G * volume, zero outside, as three 1D passes of shifted sums: a one-channel conv3d is slow on
    the CPU (2 cores, 16 patches of 32x64x64: 170 ms with three 1D convs, 36 ms shifted)."""
    line = _gaussian(radius, sigma_x).tolist()
    for axis in (2, 3, 4):
        padding = [0] * 6
        padding[2 * (4 - axis)] = padding[2 * (4 - axis) + 1] = radius
        padded = F.pad(volume, padding)
        side = volume.shape[axis]
        volume = sum(weight * padded.narrow(axis, shift, side) for shift, weight in enumerate(line))
    return volume


def patch_scaled(images: torch.Tensor) -> torch.Tensor:
    """Each patch min-max to [0, NCUT_RANGE] (B, 1, Z, Y, X)."""
    low = images.amin((1, 2, 3, 4), keepdim=True)
    high = images.amax((1, 2, 3, 4), keepdim=True)
    return (images - low) / (high - low).clamp(min=1e-6) * NCUT_RANGE


def soft_ncut(
    probabilities: torch.Tensor,
    images: torch.Tensor,
    radius: int = 2,
    sigma_i: float = 1.0,
    sigma_x: float = 4.0,
) -> torch.Tensor:
    """The N-cut of class probabilities (B, K, Z, Y, X) over `images` (B, 1, Z, Y, X), averaged over
    the batch; `images` are scaled patch by patch here."""
    x = patch_scaled(images.float())
    classes = probabilities.shape[1]
    total = x.new_zeros(())
    for k in range(classes):
        p = probabilities[:, k : k + 1].float()
        mean = (x * p).sum((2, 3, 4), keepdim=True) / p.sum((2, 3, 4), keepdim=True).clamp(min=1e-5)
        w = torch.exp(-((x - mean) ** 4) / sigma_i**2)
        numerator = (p * _smoothed(p * w, radius, sigma_x)).sum((1, 2, 3, 4))
        denominator = (p * _smoothed(w, radius, sigma_x)).sum((1, 2, 3, 4))
        total = total + (numerator / denominator.clamp(min=1e-6)).mean()
    return classes - total
