"""The typical object radius of a data set's labels (what predict scales its watershed to)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile

from voxseg.data.checks import Reading
from voxseg.data.discovery import Pair
from voxseg.data.labels import FOREGROUND, LabelMap
from voxseg.data.objects import object_radius, typical_object_radius


def _balls(shape: tuple[int, int, int], centres: list[tuple[int, int, int]], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    label = np.zeros(shape, np.uint16)
    for index, centre in enumerate(centres, start=1):
        ball = ((grid - np.array(centre)[:, None, None, None]) ** 2).sum(0) <= radius**2
        label[ball & (label == 0)] = index
    return label


def test_instance_ids_give_the_radius_even_when_objects_touch() -> None:
    centres = [(10, 10, x) for x in (8, 16, 24, 32)]  # touching: one connected component
    label = _balls((20, 20, 40), centres, 4.0)
    classes = (label > 0).astype(np.uint8) * FOREGROUND
    assert object_radius(label, classes, None, instances=True) == pytest.approx(4.0, rel=0.1)
    merged = object_radius(label, classes, None, instances=False)
    assert merged > 1.4 * 4.0  # components merge touching objects: why instance ids are preferred


def test_the_radius_is_in_micrometres_with_a_voxel_size_and_cut_objects_are_left_out() -> None:
    whole = [(10, 10, 10), (10, 10, 30), (10, 30, 10)]
    label = _balls((20, 40, 40), [*whole, (0, 30, 30)], 4.0)  # the last one is cut by the Z=0 face
    classes = (label > 0).astype(np.uint8)
    radius = object_radius(label, classes, (2.0, 1.0, 1.0), instances=True)
    assert radius == pytest.approx(4.0 * math.cbrt(2.0), rel=0.1)


def test_typical_radius_reads_the_label_files(tmp_path) -> None:
    label = _balls((20, 20, 40), [(10, 10, 8), (10, 10, 20), (10, 10, 32)], 3.0)
    tifffile.imwrite(tmp_path / "v.tif", (label > 0).astype(np.float32))
    tifffile.imwrite(tmp_path / "v_label.tif", label)
    pair = Pair(tmp_path / "v.tif", tmp_path / "v_label.tif")
    assert typical_object_radius([pair], Reading()) == pytest.approx(3.0, rel=0.15)
    sparse = Reading(label_map=LabelMap.parse("0:ignore,1:background,*:foreground"))
    assert typical_object_radius([pair], sparse) == pytest.approx(3.0, rel=0.15)  # classes, not ids


def test_a_large_volume_is_measured_on_its_middle() -> None:
    from voxseg.data.objects import central_box

    box = central_box((512, 512, 512), 2**22)
    assert np.prod([s.stop - s.start for s in box]) <= 2**22
    assert all(s.start + s.stop == 512 for s in box)  # centred


def test_packed_share_counts_nuclei_within_a_quarter_radius_of_another() -> None:
    """Nuclei with one voxel of background between them (2 voxels from centre to centre) are packed
    for nuclei of radius 8 (a quarter radius: 2), not for radius 4; far nuclei never are."""
    from voxseg.data.objects import packed_share

    ids = np.zeros((20, 20, 60), np.uint16)
    ids[5:15, 5:15, 2:12] = 1
    ids[5:15, 5:15, 13:23] = 2  # one voxel of background from nucleus 1
    ids[5:15, 5:15, 40:50] = 3  # far from both
    assert packed_share(ids, (1.0, 1.0, 1.0), radius=8.0) == pytest.approx(2 / 3)
    assert packed_share(ids, (1.0, 1.0, 1.0), radius=4.0) == 0.0
    ids[5:15, 5:15, 12] = 2  # touching
    assert packed_share(ids, (1.0, 1.0, 1.0), radius=1.0) == pytest.approx(2 / 3)
    # anisotropic voxels: 2 µm Z steps, one empty plane between two nuclei puts them 4 µm apart
    stacked = np.zeros((12, 10, 10), np.uint16)
    stacked[1:5, 2:8, 2:8], stacked[6:10, 2:8, 2:8] = 1, 2
    assert packed_share(stacked, (2.0, 0.5, 0.5), radius=16.0) == 1.0
    assert packed_share(stacked, (2.0, 0.5, 0.5), radius=8.0) == 0.0
    assert packed_share(np.zeros((3, 3, 3), np.uint8), None, radius=1.0) == 0.0
