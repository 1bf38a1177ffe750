"""Patch placement (foreground-biased, reproducible) and the Dataset that serves the patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from voxseg.data import sampling
from voxseg.data.labels import IGNORED
from voxseg.data.sampling import EpochOrder, PatchDataset, PatchSampler, candidate_centres
from voxseg.data.transforms import Augmentation
from voxseg.data.volumes import Volume

PATCH = (8, 8, 8)


def _volume(name: str, shape: tuple[int, int, int], seed: int = 0) -> Volume:
    """A noisy image with one small foreground cube near a corner (rarely hit by uniform patches)."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.uint8)
    label[1:3, 2:4, 1:3] = 1
    return Volume(name, rng.normal(size=shape).astype(np.float32), label)


def _volumes() -> list[Volume]:
    return [_volume("a", (24, 32, 28), 0), _volume("b", (8, 40, 16), 1)]


def _sampler(share: float = 1 / 3, seed: int = 0, samples: int = 6) -> PatchSampler:
    return PatchSampler(_volumes(), PATCH, samples, share, seed)


def test_plan_is_reproducible_and_changes_per_epoch() -> None:
    sampler = _sampler()
    assert sampler.plan(1) == _sampler().plan(1)
    assert sampler.plan(1) != sampler.plan(2)
    assert sampler.plan(1) != _sampler(seed=1).plan(1)


def test_plan_covers_every_volume_with_corners_in_bounds() -> None:
    sampler = _sampler(samples=5)
    shapes = [v.shape for v in _volumes()]
    for epoch in range(20):
        plan = sampler.plan(epoch)
        assert len(plan) == len(sampler) == 10
        assert [index for index, _ in plan] == [0] * 5 + [1] * 5
        for index, corner in plan:
            for c, side, p in zip(corner, shapes[index], PATCH, strict=True):
                assert 0 <= c <= side - p
                assert isinstance(c, int)


def test_foreground_share_one_puts_foreground_in_every_patch() -> None:
    volumes = _volumes()
    sampler = PatchSampler(volumes, PATCH, 8, 1.0, seed=0)
    for epoch in range(10):
        for index, corner in sampler.plan(epoch):
            window = tuple(slice(c, c + p) for c, p in zip(corner, PATCH, strict=True))
            assert volumes[index].label[window].any()


def test_foreground_share_zero_is_uniform() -> None:
    """With share 0 the corners spread over the whole range and the small foreground is mostly missed."""
    volume = _volume("a", (40, 40, 40))
    sampler = PatchSampler([volume], PATCH, 50, 0.0, seed=0)
    corners = np.array([corner for epoch in range(10) for _, corner in sampler.plan(epoch)])
    assert corners.min() == 0 and corners.max() == 32
    assert np.abs(corners.mean(axis=0) - 16).max() < 1.5
    hits = np.mean([volume.label[c[0] : c[0] + 8, c[1] : c[1] + 8, c[2] : c[2] + 8].any() for c in corners])
    assert hits < 0.05


def test_volume_without_foreground_falls_back_to_uniform() -> None:
    volume = Volume("empty", np.zeros((16, 16, 16), np.float32), np.zeros((16, 16, 16), np.uint8))
    plan = PatchSampler([volume], PATCH, 20, 1.0, seed=0).plan(0)
    assert len({corner for _, corner in plan}) > 1


def test_volume_smaller_than_patch_is_refused() -> None:
    with pytest.raises(ValueError, match="smaller than the patch"):
        PatchSampler([_volume("small", (6, 16, 16))], PATCH, 1, 0.5, seed=0)


def test_candidate_centres_of_dense_labels() -> None:
    label = np.zeros((5, 6, 7), np.uint8)
    label[1, 2, 3] = label[4, 5, 6] = 1
    foreground, annotated = candidate_centres(label)
    np.testing.assert_array_equal(foreground, [[1, 2, 3], [4, 5, 6]])
    assert annotated is None  # every voxel is annotated: uniform placement


def test_candidate_centres_are_on_one_grid_across_slabs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large volume is scanned slab by slab on a coarse grid; the points are the grid's, wherever
    the slabs start."""
    rng = np.random.default_rng(0)
    label = (rng.random((20, 12, 12)) > 0.8).astype(np.uint8)
    monkeypatch.setattr(sampling, "_MAX_SCANNED_VOXELS", 110)  # 2880 voxels: stride 3
    monkeypatch.setattr("voxseg.data.checks.SLAB_VOXELS", 7 * 144)  # slabs of 7 planes
    foreground, _ = candidate_centres(label)
    np.testing.assert_array_equal(foreground, np.argwhere(label[::3, ::3, ::3]) * 3)


def test_sparse_labels_centre_the_other_patches_on_annotated_voxels() -> None:
    """With only one plane annotated, no patch is placed where nothing is annotated."""
    shape = (40, 16, 16)
    label = np.full(shape, IGNORED, np.uint8)
    label[30] = 0
    label[30, 4:8, 4:8] = 1
    volume = Volume("sparse", np.zeros(shape, np.float32), label)
    sampler = PatchSampler([volume], PATCH, 50, foreground_share=0.33, seed=0)
    for _, corner in sampler.plan(epoch=1):
        assert corner[0] <= 30 < corner[0] + PATCH[0]


def test_epoch_order_is_a_seeded_permutation_per_epoch() -> None:
    order = EpochOrder(12, seed=0)
    order.epoch = 1
    first = list(order)
    assert len(order) == 12
    assert sorted(i for _, i in first) == list(range(12))
    assert {e for e, _ in first} == {1}
    assert list(order) == first
    order.epoch = 2
    assert [i for _, i in order] != [i for _, i in first]


def test_dataset_items_without_augmentation_are_the_planned_windows() -> None:
    volumes = _volumes()
    sampler = PatchSampler(volumes, PATCH, 3, 0.5, seed=0)
    dataset = PatchDataset(volumes, sampler)
    plan = sampler.plan(4)
    for item, (index, corner) in enumerate(plan):
        image, label, _ = dataset[(4, item)]
        window = tuple(slice(c, c + p) for c, p in zip(corner, PATCH, strict=True))
        assert image.shape == label.shape == (1, *PATCH)
        assert image.dtype == label.dtype == torch.float32
        np.testing.assert_array_equal(image[0].numpy(), volumes[index].image[window])
        np.testing.assert_array_equal(label[0].numpy(), volumes[index].label[window])


def test_same_key_gives_the_same_augmented_sample() -> None:
    volumes = _volumes()
    sampler = PatchSampler(volumes, PATCH, 4, 0.5, seed=0)
    dataset = PatchDataset(volumes, sampler, Augmentation(PATCH))
    for key in [(1, 0), (1, 5), (2, 0)]:
        image, label, seed = dataset[key]
        dataset[(7, 3)]  # another epoch in between evicts the cached plan
        again_image, again_label, again_seed = dataset[key]
        assert seed == again_seed
        assert image.shape == label.shape == (1, *PATCH)
        assert torch.equal(image, again_image) and torch.equal(label, again_label)
        assert set(label.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(dataset[(1, 0)][0], dataset[(2, 0)][0])


def test_batches_do_not_depend_on_the_number_of_workers() -> None:
    """The same epoch gives the same batches whether patches come from 0 or 2 worker processes.

    Labels must match exactly; images up to float rounding, because worker processes run torch with
    one thread and the elastic resampling sums in another order (differences ~1e-7).
    """
    volumes = _volumes()

    def batches(workers: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        sampler = PatchSampler(volumes, PATCH, 3, 0.5, seed=5)
        dataset = PatchDataset(volumes, sampler, Augmentation(PATCH))
        order = EpochOrder(len(dataset), seed=5)
        order.epoch = 3
        loader = DataLoader(dataset, batch_size=2, sampler=order, num_workers=workers)
        return list(loader)

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 3
    for (image, label, seeds), (image2, label2, seeds2) in zip(serial, parallel, strict=True):
        assert image.shape == (2, 1, *PATCH)
        assert torch.equal(label, label2) and torch.equal(seeds, seeds2)
        torch.testing.assert_close(image, image2, rtol=0, atol=1e-5)


def test_augmenting_a_batch_later_gives_what_the_workers_give() -> None:
    """Deferred augmentation (on the GPU after the copy) draws the same changes as in the loader."""
    volumes = _volumes()
    sampler = PatchSampler(volumes, PATCH, 3, 0.5, seed=5)
    augment = Augmentation(PATCH)
    order = EpochOrder(len(sampler), seed=5)
    order.epoch = 2
    in_loader = DataLoader(PatchDataset(volumes, sampler, augment), batch_size=3, sampler=order)
    deferred = DataLoader(PatchDataset(volumes, sampler), batch_size=3, sampler=order)
    for (image, label, seeds), (raw_image, raw_label, same_seeds) in zip(in_loader, deferred, strict=True):
        assert torch.equal(seeds, same_seeds)
        later_image, later_label = augment.batch(raw_image, raw_label, seeds)
        assert torch.equal(label, later_label)
        torch.testing.assert_close(image, later_image, rtol=0, atol=1e-5)
