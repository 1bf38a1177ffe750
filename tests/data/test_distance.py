"""The distance target: 1 at each nucleus's centre, falling to 0 at its own boundary, also where it
touches a neighbour; nuclei cut by a face continue past it."""

from __future__ import annotations

import numpy as np
import pytest

from voxseg.data.distance import normalised_distance


def _ball(shape: tuple[int, int, int], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def test_touching_nuclei_each_peak_at_their_centre_and_part_at_their_shared_face() -> None:
    ids = np.zeros((20, 20, 40), np.uint16)
    ids[2:18, 2:18, 4:20] = 1
    ids[2:18, 2:18, 20:36] = 2  # touches nucleus 1 along X = 19|20
    target = normalised_distance(ids, radius=8)
    assert target.dtype == np.float32 and target.shape == ids.shape
    assert target[ids == 0].max() == 0.0
    for index in (1, 2):
        inside = target[ids == index]
        assert inside.max() == pytest.approx(1.0) and inside.min() > 0
    # the face both share is as low as an outer face: the neighbour counts as outside
    assert target[10, 10, 19] == pytest.approx(target[10, 10, 4]) and target[10, 10, 19] < 0.2
    assert target[10, 10, 11] > 0.8 and target[10, 10, 27] > 0.8


def test_size_does_not_change_the_centre_value_and_voxel_size_keeps_it_round() -> None:
    """Large and small nuclei both reach 1; with 2x1x1 µm voxels a ball of 8 µm is 4 planes deep in Z
    and its distances are measured in µm, so its centre column falls off alike in Z and X."""
    small = _ball((20, 40, 40), (10, 20, 20), 4).astype(np.uint16)
    large = _ball((20, 40, 40), (10, 20, 20), 9).astype(np.uint16)
    assert normalised_distance(small)[10, 20, 20] == pytest.approx(1.0)
    assert normalised_distance(large)[10, 20, 20] == pytest.approx(1.0)
    grid = np.meshgrid(np.arange(20) * 2.0, np.arange(40), np.arange(40), indexing="ij")
    flat = ((grid[0] - 20) ** 2 + (grid[1] - 20) ** 2 + (grid[2] - 20) ** 2 <= 8**2).astype(np.uint16)
    target = normalised_distance(flat, spacing=(2.0, 1.0, 1.0), radius=8)
    assert target[12, 20, 20] == pytest.approx(target[10, 20, 24], abs=0.05)  # 4 µm off centre both ways


def test_a_nucleus_cut_by_a_face_continues_past_it() -> None:
    """The crop's face is not the nucleus's boundary: its voxels on the face are not 0."""
    ids = np.zeros((20, 20, 20), np.uint16)
    ids[0:8, 6:14, 6:14] = 1  # cut by the Z = 0 face
    target = normalised_distance(ids, radius=4)
    assert target[0, 10, 10] == pytest.approx(1.0)
    assert target[0, 10, 6] < 0.5  # its side faces are boundaries as usual


def test_no_objects_and_thin_objects() -> None:
    assert not normalised_distance(np.zeros((4, 5, 6), np.uint8)).any()
    ids = np.zeros((4, 5, 6), np.uint8)
    ids[2, 2, 2] = 7  # a single voxel still marks its own centre
    assert normalised_distance(ids)[2, 2, 2] == pytest.approx(1.0)
