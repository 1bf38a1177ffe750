"""Labels a volume gives itself: the intensity cut whose partition has the lowest soft N-cut.

Why: the N-cut is what WNet3D minimises, and on QCANet its lowest value among the cuts of the
blurred image falls where the hand-made labels do (08-cell: the 97.5th percentile, Dice 0.845, the
best any cut reaches; 16-cell: Dice 0.903 of 0.909), while a network trained on the N-cut from a
random start ends in partitions 5-10 times too large (Dice 0.3-0.5). So WNet3D starts from this
partition: its encoder is taught it, and the N-cut and the reconstruction refine it.
"""

from __future__ import annotations

import numpy as np

from voxseg.io.formats import Spacing

#: the partition is searched among the cuts at these quantiles of the blurred image, then between
#: the best one's neighbours at REFINE finer steps
CUT_QUANTILES, REFINE = np.linspace(0.5, 0.995, 34), 8
#: patches the N-cut of each cut is measured on, and their size (cut to the volume's)
SAMPLE_PATCHES, SAMPLE_PATCH = 16, (32, 64, 64)
#: the blur before cutting, in voxels along the finest axis
BLUR_SIGMA = 1.0


def blur_sigmas(voxel_size: Spacing | None) -> tuple[float, float, float]:
    """BLUR_SIGMA in µm of the finest axis, in voxels of each axis (coarse Z gets less)."""
    if voxel_size is None:
        return (BLUR_SIGMA,) * 3  # type: ignore[return-value]
    finest = min(voxel_size)
    return tuple(BLUR_SIGMA * finest / side for side in voxel_size)  # type: ignore[return-value]


def ncut_partition(
    image: np.ndarray,
    voxel_size: Spacing | None = None,
    radius: int = 2,
    sigma_i: float = 1.0,
    sigma_x: float = 4.0,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """(the partition as uint8 classes 0/1, its share of the volume) of a normalised image."""
    import torch
    from scipy import ndimage

    from voxseg.ncut import soft_ncut

    blurred = ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), blur_sigmas(voxel_size))
    rng = np.random.default_rng(seed)
    patch = tuple(min(p, s) for p, s in zip(SAMPLE_PATCH, blurred.shape, strict=True))
    regions = []
    for _ in range(SAMPLE_PATCHES):
        start = [int(rng.integers(0, s - p + 1)) for s, p in zip(blurred.shape, patch, strict=True)]
        regions.append(tuple(slice(b, b + p) for b, p in zip(start, patch, strict=True)))
    x = torch.stack([torch.from_numpy(np.ascontiguousarray(image[r], dtype=np.float32)) for r in regions])
    x = x[:, None]

    def value(quantile: float) -> float:
        cut = np.quantile(blurred, quantile)
        inside = torch.stack([torch.from_numpy(blurred[r] > cut) for r in regions])[:, None].float()
        return float(soft_ncut(torch.cat([1 - inside, inside], 1), x, radius, sigma_i, sigma_x))

    with torch.no_grad():
        best = int(np.argmin([value(q) for q in CUT_QUANTILES]))
        low, high = CUT_QUANTILES[max(best - 1, 0)], CUT_QUANTILES[min(best + 1, len(CUT_QUANTILES) - 1)]
        finer = np.linspace(low, high, 2 * REFINE + 1)
        quantile = finer[int(np.argmin([value(q) for q in finer]))]
    partition = (blurred > np.quantile(blurred, quantile)).astype(np.uint8)
    return partition, float(partition.mean())
