"""The default training budget: a patch shaped by the voxel size, and patches per epoch sized to
the data rather than to the number of files.

Before, an epoch was `--samples-per-image` (4) patches per volume and the patch a 64³ cube: one
annotated volume trained on 200 patches in 50 epochs, most of their Z padding or out of the
volume's coarse axis, and a user with one 100³ volume got a model that never left Dice 0.25. Now
(`auto`, the defaults):

* the patch has `BASE_SIDE` voxels along the finest axis and proportionally fewer along coarser
  ones, so it covers about a cube in µm (nnU-Net's rule); QCANet's 1.75×0.8×0.8 µm voxels give
  32×64×64, half the voxels of the cube and the same field of view in Y/X;
* an epoch holds `MIN_PATCHES_PER_EPOCH` patches, or one pass over the training voxels when the
  data is larger, shared among the volumes by their size (at least one each), as nnU-Net keeps its
  iterations per epoch fixed whatever the number of cases.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from voxseg.io.formats import Spacing
from voxseg.models.registry import ModelSpec

#: voxels of the automatic patch along the finest axis (CPU; a GPU grows it to fit its memory)
BASE_SIDE = 64
MIN_PATCHES_PER_EPOCH = 16


def patch_shape(voxel_size: Spacing | None) -> tuple[float, float, float]:
    """Each axis's share of the finest axis's patch side: 1 for the finest, less for coarser ones."""
    if voxel_size is None:
        return (1.0, 1.0, 1.0)
    finest = min(voxel_size)
    return tuple(finest / side for side in voxel_size)  # type: ignore[return-value]


def shaped_patch(
    spec: ModelSpec,
    side: int,
    shape: Sequence[float],
    limit: Sequence[int],
    pow2: bool = False,
) -> tuple[int, int, int]:
    """The valid patch with `side` voxels along the finest axis, shaped by `shape`, each axis at most
    `limit` (the smallest training volume, already valid for the model)."""
    wanted = tuple(min(max(round(side * share), 1), cap) for share, cap in zip(shape, limit, strict=True))
    return spec.valid_size(wanted, pow2)  # type: ignore[arg-type]


def patches_per_volume(volume_sizes: Sequence[int], patch: Sequence[int]) -> tuple[list[int], str]:
    """Patches each training volume gives an epoch (`--samples-per-image auto`), and why."""
    total_voxels = sum(volume_sizes)
    passes = total_voxels / math.prod(patch)
    per_epoch = max(MIN_PATCHES_PER_EPOCH, math.ceil(passes))
    counts = [max(1, round(per_epoch * size / total_voxels)) for size in volume_sizes]
    why = (
        f"--samples-per-image auto: {sum(counts)} patches per epoch (at least {MIN_PATCHES_PER_EPOCH}, "
        f"or one pass over the {total_voxels / 1e6:.2f} M training voxels, {passes:.1f} patches)"
    )
    if len(counts) > 1:
        why += ", shared among the volumes by size"
    return counts, why
