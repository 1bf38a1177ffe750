"""The default budget: a patch shaped by the voxel size, patches per epoch sized to the data."""

from __future__ import annotations

import pytest

from voxseg.models.registry import get_model_spec
from voxseg.training.budget import MIN_PATCHES_PER_EPOCH, patch_shape, patches_per_volume, shaped_patch

SPEC = get_model_spec("SegResNetDS")


@pytest.mark.parametrize(
    ("voxel_size", "limit", "patch"),
    [
        ((1.75, 0.8, 0.8), (48, 120, 120), (32, 64, 64)),  # QCANet: about a cube in µm
        (None, (200, 200, 200), (64, 64, 64)),  # unknown voxel size: a cube of voxels
        ((1.0, 1.0, 1.0), (40, 200, 200), (40, 64, 64)),  # never beyond the smallest volume
        ((5.0, 1.0, 1.0), (100, 100, 100), (16, 64, 64)),  # 12.8 rounded up to the model's rule
    ],
)
def test_patch_follows_the_voxel_size(voxel_size, limit, patch) -> None:
    assert shaped_patch(SPEC, 64, patch_shape(voxel_size), limit) == patch


def test_an_epoch_is_sized_to_the_data_not_to_the_number_of_files() -> None:
    one_small, why = patches_per_volume([51 * 120 * 122], (32, 64, 64))
    assert one_small == [MIN_PATCHES_PER_EPOCH] and "16 patches per epoch" in why
    many = patches_per_volume([100_000] * 40, (32, 64, 64))[0]
    assert len(many) == 40 and all(count == 1 for count in many)  # at least one from each volume
    large = patches_per_volume([512 * 1024 * 1024, 128 * 1024 * 1024], (64, 64, 64))[0]
    assert large == [2048, 512]  # one pass over the voxels, shared by size


def test_every_volume_gets_its_share() -> None:
    counts = patches_per_volume([300_000, 100_000], (32, 64, 64))[0]
    assert counts == [12, 4]
