"""Which voxels validate: whole volumes for many, spread blocks of every volume for one or a few."""

from __future__ import annotations

import numpy as np
import pytest

from voxseg.data.labels import BACKGROUND, FOREGROUND, IGNORED
from voxseg.data.split import MIN_BLOCK_SIDE, BlockGrid, split_volumes
from voxseg.data.volumes import Volume
from voxseg.errors import DataError


def _volume(name: str, shape: tuple[int, int, int], seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume(name, rng.normal(size=shape).astype(np.float32), (rng.random(shape) > 0.7).astype(np.uint8))


def _names(volumes: list[Volume]) -> list[str]:
    return [v.name for v in volumes]


def test_many_volumes_split_whole_and_seeded() -> None:
    volumes = [_volume(f"v{i}", (4, 4, 4), i) for i in range(10)]
    first, again = split_volumes(volumes, 0.7, seed=3), split_volumes(volumes, 0.7, seed=3)
    assert _names(first.train) == _names(again.train) and _names(first.val) == _names(again.val)
    assert len(first.train) == 7 and len(first.val) == 3 and not first.blocks_held_out
    assert sorted(_names(first.train) + _names(first.val)) == sorted(_names(volumes))
    others = {tuple(_names(split_volumes(volumes, 0.7, seed=s).val)) for s in range(5)}
    assert len(others) > 1, "the seed has no effect on the split"


@pytest.mark.parametrize(("count", "fraction"), [(3, 0.99), (3, 0.01), (5, 0.5)])
def test_whole_volume_split_keeps_one_volume_on_each_side(count: int, fraction: float) -> None:
    volumes = [_volume(f"v{i}", (4, 4, 4), i) for i in range(count)]
    split = split_volumes(volumes, fraction, seed=0)
    assert len(split.train) >= 1 and len(split.val) >= 1
    assert len(split.train) + len(split.val) == count
    assert all(name in split.description for name in _names(split.val))


def _nuclei(shape: tuple[int, int, int], filled_columns: int) -> Volume:
    """Balls of foreground on a grid, only in the first `filled_columns` along X."""
    label = np.zeros(shape, np.uint8)
    grid = np.indices(shape)
    for z in range(6, shape[0] - 5, 12):
        for y in range(6, shape[1] - 5, 12):
            for x in range(6, filled_columns - 5, 12):
                ball = ((grid - np.array([z, y, x])[:, None, None, None]) ** 2).sum(0) <= 16
                label[ball] = FOREGROUND
    image = label.astype(np.float32) + np.random.default_rng(0).normal(0, 0.1, shape).astype(np.float32)
    return Volume("only.tif", image, label, voxel_size=(1.0, 1.0, 1.0))


def test_one_volume_validates_on_blocks_holding_its_foreground_share() -> None:
    """QCANet's 8-cell embryo case: the nuclei fill only part of the volume, yet every held-out
    block holds foreground, about in the volume's share; training never sees their labels."""
    volume = _nuclei((48, 64, 120), filled_columns=70)
    split = split_volumes([volume], 0.8, seed=0)
    assert split.blocks_held_out and len(split.train) == len(split.val) == 1
    train, val = split.train[0], split.val[0]
    np.testing.assert_array_equal(train.image, volume.image)  # the image stays whole
    scored = val.label != IGNORED
    assert 0.1 < scored.mean() * val.label.size / volume.label.size < 0.4
    share = (val.label[scored] == FOREGROUND).mean()
    whole = (volume.label == FOREGROUND).mean()
    assert abs(share - whole) / whole < 0.5
    # every validated voxel is hidden from training, and so is a margin around it
    z0, y0, x0 = val.origin
    in_volume = np.zeros(volume.shape, bool)
    in_volume[z0 : z0 + val.shape[0], y0 : y0 + val.shape[1], x0 : x0 + val.shape[2]] = scored
    assert (train.label[in_volume] == IGNORED).all()
    assert (train.label == IGNORED).sum() > in_volume.sum()
    # elsewhere the training labels are the volume's
    np.testing.assert_array_equal(train.label[train.label != IGNORED], volume.label[train.label != IGNORED])
    assert "only one volume" in split.description and "only.tif" in split.description


def test_validation_blocks_are_about_cubic_in_micrometres() -> None:
    """Coarse Z steps: the blocks are not slabs a few planes thick along Z."""
    grid = BlockGrid.of((51, 120, 122), (1.75, 0.8, 0.8))
    assert grid.parts == (2, 2, 2)
    grid = BlockGrid.of((100, 100, 100), (5.7, 1.0, 1.0))
    z, y, x = (side / parts for side, parts in zip(grid.shape, grid.parts, strict=True))
    assert 0.5 < (z * 5.7) / y < 2 and z >= MIN_BLOCK_SIDE


def test_few_volumes_each_give_blocks() -> None:
    volumes = [_nuclei((32, 48, 48), 48) for _ in range(2)]
    split = split_volumes(volumes, 0.8, seed=1)
    assert split.blocks_held_out and len(split.train) == len(split.val) == 2
    assert all((v.label == FOREGROUND).any() for v in split.val)
    assert all((v.label == BACKGROUND).any() for v in split.val)


def test_a_volume_too_small_for_blocks_is_refused() -> None:
    with pytest.raises(DataError, match="--val-images") as info:
        split_volumes([_volume("tiny.tif", (12, 10, 10))], 0.8, seed=0)
    assert "tiny.tif" in str(info.value)


def test_two_volumes_too_small_for_blocks_split_whole() -> None:
    split = split_volumes([_volume("a", (12, 10, 10)), _volume("b", (12, 10, 10), 1)], 0.8, seed=0)
    assert len(split.train) == len(split.val) == 1 and not split.blocks_held_out
