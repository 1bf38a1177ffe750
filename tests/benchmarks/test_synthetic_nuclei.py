"""The dense synthetic set is what it claims: packed, mostly touching nuclei, brighter than the
background, shaped by the voxel size, which the written files carry to voxseg's reader."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from synthetic_nuclei import dense_nuclei, touching_share, write_volume  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_most_nuclei_touch_and_ids_are_consecutive(seed: int) -> None:
    image, labels = dense_nuclei(seed=seed)
    assert image.dtype == np.float32 and labels.dtype == np.uint16 and image.shape == labels.shape
    assert touching_share(labels) >= 0.6
    ids = np.unique(labels[labels > 0])
    assert ids.size > 50 and np.array_equal(ids, np.arange(1, ids.size + 1))


@pytest.mark.parametrize("fill", [0.2, 0.35])
def test_foreground_fills_the_share_asked(fill: float) -> None:
    _, labels = dense_nuclei(seed=0, fill=fill)
    assert abs((labels > 0).mean() - fill) <= 0.1


def test_nuclei_are_brighter_than_the_background() -> None:
    image, labels = dense_nuclei(seed=0)
    assert image[labels > 0].mean() > image[labels == 0].mean() + 0.3


def test_touching_share_counts_nuclei_with_a_neighbour_of_another_id() -> None:
    labels = np.zeros((4, 8, 8), np.uint16)
    labels[1:3, 1:3, 1:3] = 1
    labels[1:3, 1:3, 3:5] = 2  # face to face with 1
    labels[1:3, 5:7, 6:8] = 3  # apart (diagonal contact would not count)
    assert touching_share(labels) == pytest.approx(2 / 3)
    assert touching_share(np.zeros((2, 2, 2), np.uint16)) == 0.0


def test_anisotropic_voxels_flatten_nuclei_in_z() -> None:
    _, labels = dense_nuclei(seed=0, spacing=(2.0, 1.0, 1.0))
    boxes = ndimage.find_objects(labels)
    ratios = [(box[0].stop - box[0].start) / (box[2].stop - box[2].start) for box in boxes]
    assert np.median(ratios) == pytest.approx(0.5, abs=0.1)


def test_written_volumes_carry_the_voxel_size_to_voxsegs_reader(tmp_path: Path) -> None:
    from voxseg.io.formats import open_volume

    spacing = (2.0, 0.5, 0.25)
    image, labels = dense_nuclei(shape=(12, 24, 24), seed=0, spacing=spacing)
    write_volume(tmp_path, "dense", image, labels, spacing)
    for kind, array in (("images", image), ("labels", labels)):
        volume = open_volume(tmp_path / kind / "dense.tif")
        assert volume.shape == array.shape and volume.voxel_size == pytest.approx(spacing, rel=1e-4)
        assert np.array_equal(volume[:], array)
