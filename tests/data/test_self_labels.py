"""The partition an image without labels gives itself (the lowest N-cut among cuts of the blur)."""

from __future__ import annotations

import numpy as np

from tests.conftest import synthetic_volume
from voxseg.data.normalise import normalise
from voxseg.data.self_labels import blur_sigmas, ncut_partition


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_the_partition_finds_the_cells_without_their_labels() -> None:
    image, label = synthetic_volume((24, 40, 40), seed=3, cells=4)
    partition, share = ncut_partition(normalise(image))
    assert partition.dtype == np.uint8 and set(np.unique(partition)) <= {0, 1}
    assert share == partition.mean()
    assert _dice(partition > 0, label > 0) > 0.85


def test_coarse_axes_are_blurred_less() -> None:
    assert blur_sigmas(None) == (1.0, 1.0, 1.0)
    assert blur_sigmas((2.0, 0.5, 0.5)) == (0.25, 1.0, 1.0)
