"""The threshold a run hands to predict: tuned only where the validation supports it."""

from __future__ import annotations

import numpy as np
import pytest

from voxseg.data.labels import FOREGROUND
from voxseg.inference.scoring.metrics import CUT_POINTS
from voxseg.training.threshold_rule import MIN_GAIN, MIN_OBJECTS, choose_threshold, count_objects


def _curve(peak_at: float, peak: float, slope: float = 1.0) -> np.ndarray:
    return peak - slope * np.abs(np.asarray(CUT_POINTS) - peak_at)


def test_a_clear_gain_inside_the_grid_is_adopted() -> None:
    choice = choose_threshold(_curve(0.3, 0.9), objects=MIN_OBJECTS)
    assert choice.threshold == 0.3 and choice.dice == pytest.approx(0.9)
    assert choice.dice_at_half == pytest.approx(0.7) and choice.reason.startswith("tuned")


@pytest.mark.parametrize(
    ("curve", "objects", "why"),
    [
        (_curve(0.95, 0.9), 20, "edge of the grid"),
        (_curve(0.05, 0.9), 20, "edge of the grid"),
        (_curve(0.45, 0.9, slope=MIN_GAIN), 20, "gain below"),
        (_curve(0.3, 0.9), MIN_OBJECTS - 1, "too few"),
    ],
)
def test_unsupported_cuts_keep_half(curve: np.ndarray, objects: int, why: str) -> None:
    choice = choose_threshold(curve, objects)
    assert choice.threshold == 0.5 and choice.dice == choice.dice_at_half
    assert choice.reason.startswith("kept at 0.5") and why in choice.reason


def test_half_at_the_top_is_said_so() -> None:
    choice = choose_threshold(_curve(0.5, 0.9), objects=1)
    assert choice.threshold == 0.5 and "best cut" in choice.reason


def test_objects_are_connected_components_of_the_foreground_class() -> None:
    label = np.zeros((8, 8, 8), np.uint8)
    label[1:3, 1:3, 1:3] = FOREGROUND
    label[5:7, 5:7, 5:7] = FOREGROUND
    label[0, 7, 0] = 2  # not annotated: no object
    assert count_objects([label, label]) == 4


def test_a_partition_validates_the_checkpoint_but_never_tunes_the_cut() -> None:
    choice = choose_threshold(_curve(0.3, 0.9), objects=MIN_OBJECTS * 10, partitions=True)
    assert choice.threshold == 0.5 and "own partition" in choice.reason
