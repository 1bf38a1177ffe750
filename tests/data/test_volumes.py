"""Normalisation, padding and the train/validation split of volumes held in memory or left on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxseg.data.discovery import Pair
from voxseg.data.normalise import CLIP_PERCENTILES, normalise
from voxseg.data.volumes import (
    OnDisk,
    Volume,
    load_volumes,
    pad_amounts,
    pad_volume,
    split_volume,
    split_volumes,
)
from voxseg.errors import DataError


def _volume(name: str, shape: tuple[int, int, int], seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    return Volume(name, rng.normal(size=shape).astype(np.float32), (rng.random(shape) > 0.7).astype(np.uint8))


# -- normalise ----------------------------------------------------------------------------------------


def test_normalise_z_scores() -> None:
    image = np.random.default_rng(0).normal(500.0, 40.0, (16, 16, 16)).astype(np.float32)
    out = normalise(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert abs(float(out.mean())) < 1e-4
    assert float(out.std()) == pytest.approx(1.0, abs=1e-3)


def test_normalise_clips_hot_pixels_to_the_percentiles() -> None:
    """One hot pixel must not squash the contrast of everything else."""
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 100, (20, 20, 20)).astype(np.float32)
    image[0, 0, 0] = 1e6
    image[0, 0, 1] = -1e6
    low, high = np.percentile(image, CLIP_PERCENTILES)
    out = normalise(image)
    clipped = np.clip(image, low, high)
    expected = (clipped - clipped.mean()) / clipped.std()
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    assert out[0, 0, 0] == pytest.approx(out.max()) and out.max() < 3  # not 1e6 standard deviations away
    assert out[0, 0, 1] == pytest.approx(out.min())


def test_normalise_constant_volume_gives_zeros() -> None:
    out = normalise(np.full((8, 8, 8), 7.0, np.float32))
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, np.zeros((8, 8, 8), np.float32))


def test_normalise_integer_image() -> None:
    image = np.arange(8 * 8 * 8, dtype=np.uint16).reshape(8, 8, 8)
    out = normalise(image)
    assert out.dtype == np.float32
    assert float(out.std()) == pytest.approx(1.0, abs=1e-3)
    assert np.all(np.diff(out.ravel()) >= 0)  # order of intensities preserved


# -- padding ------------------------------------------------------------------------------------------


def test_pad_amounts_are_symmetric() -> None:
    assert pad_amounts((10, 20, 7), (16, 16, 16)) == [(3, 3), (0, 0), (4, 5)]


def test_pad_volume_reaches_at_least_the_target() -> None:
    volume = _volume("v", (10, 20, 7))
    padded = pad_volume(volume, (16, 16, 16))
    assert padded.shape == (16, 20, 16)
    assert padded.name == "v"
    # original content in the middle, label 0 and image minimum around it
    np.testing.assert_array_equal(padded.image[3:13, :, 4:11], volume.image)
    np.testing.assert_array_equal(padded.label[3:13, :, 4:11], volume.label)
    assert padded.label.sum() == volume.label.sum()
    assert padded.label.dtype == np.uint8
    border = np.ones(padded.shape, bool)
    border[3:13, :, 4:11] = False
    assert np.all(padded.image[border] == volume.image.min())


def test_pad_volume_leaves_big_volumes_alone() -> None:
    volume = _volume("v", (16, 20, 16))
    assert pad_volume(volume, (16, 16, 8)) is volume


# -- split --------------------------------------------------------------------------------------------


def _names(volumes: list[Volume]) -> list[str]:
    return [v.name for v in volumes]


def test_split_is_seeded() -> None:
    volumes = [_volume(f"v{i}", (4, 4, 4), i) for i in range(10)]
    first = split_volumes(volumes, 0.7, seed=3, min_side=1)
    again = split_volumes(volumes, 0.7, seed=3, min_side=1)
    assert _names(first[0]) == _names(again[0]) and _names(first[1]) == _names(again[1])
    assert len(first[0]) == 7 and len(first[1]) == 3
    assert sorted(_names(first[0]) + _names(first[1])) == sorted(_names(volumes))
    others = {tuple(_names(split_volumes(volumes, 0.7, seed=s, min_side=1)[1])) for s in range(5)}
    assert len(others) > 1, "the seed has no effect on the split"


@pytest.mark.parametrize(("count", "fraction"), [(2, 0.99), (2, 0.01), (3, 0.99), (3, 0.01), (5, 0.5)])
def test_split_keeps_at_least_one_volume_on_each_side(count: int, fraction: float) -> None:
    volumes = [_volume(f"v{i}", (4, 4, 4), i) for i in range(count)]
    train, val, how = split_volumes(volumes, fraction, seed=0, min_side=1)
    assert len(train) >= 1 and len(val) >= 1
    assert len(train) + len(val) == count
    assert set(_names(train)).isdisjoint(_names(val))
    assert all(name in how for name in _names(val))


def test_single_volume_is_cut_along_its_longest_axis() -> None:
    volume = _volume("only.tif", (16, 40, 24))
    train, val, how = split_volumes([volume], 0.8, seed=0, min_side=8)
    assert len(train) == len(val) == 1
    assert train[0].shape == (16, 32, 24) and val[0].shape == (16, 8, 24)
    np.testing.assert_array_equal(np.concatenate([train[0].image, val[0].image], axis=1), volume.image)
    np.testing.assert_array_equal(np.concatenate([train[0].label, val[0].label], axis=1), volume.label)
    assert "only one volume" in how and "only.tif" in how and "along Y" in how
    assert "last 8 of 40" in how


def test_single_volume_validation_part_is_at_least_min_side() -> None:
    """A 0.95 fraction of 24 voxels would leave 1 voxel; the model needs at least min_side."""
    train, val = split_volume(_volume("v", (24, 10, 10)), 0.95, min_side=8)[:2]
    assert val.shape[0] == 8 and train.shape[0] == 16


def test_single_volume_too_small_to_cut() -> None:
    with pytest.raises(DataError, match="--val-images") as info:
        split_volumes([_volume("tiny.tif", (12, 10, 10))], 0.8, seed=0, min_side=8)
    assert "tiny.tif" in str(info.value)


# -- volumes left on disk -----------------------------------------------------------------------------


def _zarr_pair(root: Path, image: np.ndarray, label: np.ndarray) -> Pair:
    import zarr

    paths = []
    for kind, array in (("images", image), ("labels", label)):
        (root / kind).mkdir(parents=True, exist_ok=True)
        store = zarr.open_array(root / kind / "v.zarr", mode="w", shape=array.shape, dtype=array.dtype)
        store[...] = array
        paths.append(root / kind / "v.zarr")
    return Pair(paths[0], paths[1])


def test_a_volume_over_the_budget_stays_on_disk_and_reads_as_held(tmp_path: Path) -> None:
    """Beyond the memory budget a volume is read patch by patch, with the same normalisation and
    label classes as when it is held; its split keeps the training part on disk."""
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (20, 16, 16)).astype(np.float32)
    label = (rng.random((20, 16, 16)) > 0.8).astype(np.uint16) * 7
    pair = _zarr_pair(tmp_path, image, label)
    (held,), _, _ = load_volumes([pair])
    (on_disk,), _, notes = load_volumes([pair], memory_budget=0)
    assert not held.on_disk and on_disk.on_disk
    assert any("read patch by patch from disk" in note for note in notes)
    window = (slice(3, 11), slice(2, 10), slice(0, 16))
    np.testing.assert_array_equal(on_disk.image[window], held.image[window])
    np.testing.assert_array_equal(on_disk.label[window], held.label[window])
    train, val, _ = split_volume(on_disk, 0.5, min_side=4)
    assert train.on_disk and isinstance(train.image, OnDisk)
    np.testing.assert_array_equal(train.image[2:5], held.image[2:5])
    np.testing.assert_array_equal(np.asarray(val.image), held.image[10:])
    np.testing.assert_array_equal(val.in_memory().label, held.label[10:])
