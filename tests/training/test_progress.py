"""RunProgress: which validation is kept, at which threshold, and the early-stop count."""

from __future__ import annotations

import numpy as np

from voxseg.inference.scoring.metrics import CUT_POINTS
from voxseg.training.progress import RunProgress


def _curve(peak_at: float, peak: float) -> np.ndarray:
    """A Dice-by-threshold curve with its maximum `peak` at the cut `peak_at`."""
    cuts = np.asarray(CUT_POINTS)
    return peak - np.abs(cuts - peak_at)


def test_validations_are_ranked_by_their_dice_at_the_threshold_predict_would_use() -> None:
    progress = RunProgress()
    centred, shifted = _curve(0.5, 0.80), _curve(0.3, 0.90)  # shifted: worse at 0.5, better once tuned
    assert progress.record_validation(3, centred, 0, objects=10)[0]
    improved, choice = progress.record_validation(6, shifted, 0, objects=10)
    assert improved and choice.threshold == 0.3
    assert (progress.best_epoch, progress.threshold, progress.best_dice) == (6, 0.3, 0.90)
    assert progress.best_dice_at_half == float(shifted[CUT_POINTS.index(0.5)])
    assert "tuned" in progress.threshold_reason
    assert not progress.record_validation(9, _curve(0.5, 0.85), 0, objects=10)[0]  # better at 0.5 only
    assert progress.best_epoch == 6


def test_a_validation_too_small_to_tune_on_keeps_half_and_is_ranked_there() -> None:
    progress = RunProgress()
    shifted = _curve(0.3, 0.90)
    improved, choice = progress.record_validation(1, shifted, 0, objects=2)
    assert improved and choice.threshold == 0.5 and progress.threshold == 0.5
    assert progress.best_dice == float(shifted[CUT_POINTS.index(0.5)])
    assert "too few" in progress.threshold_reason


def test_early_stop_counts_validations_without_a_better_dice() -> None:
    progress = RunProgress()
    progress.record_validation(1, _curve(0.5, 0.8), 2)
    progress.record_validation(2, _curve(0.5, 0.7), 2)
    assert not progress.stopped_early
    progress.record_validation(3, _curve(0.5, 0.75), 2)
    assert progress.stopped_early


def test_a_run_resumed_from_before_the_threshold_rule_keeps_its_tuned_dice_to_beat() -> None:
    saved = RunProgress(best_dice=0.8, best_epoch=4).state_dict() | {"threshold_dice": 0.9, "epoch": 4}
    progress = RunProgress.from_state(saved)
    assert (progress.best_dice, progress.best_dice_at_half) == (0.9, 0.8)
    assert not progress.record_validation(5, _curve(0.5, 0.85), 0)[0]
    assert progress.record_validation(6, _curve(0.5, 0.95), 0)[0]
