"""RunProgress: which validation is kept, and the early-stop count."""

from __future__ import annotations

import numpy as np

from voxseg.inference.metrics import CUT_POINTS
from voxseg.training.progress import RunProgress


def _curve(peak_at: float, peak: float) -> np.ndarray:
    """A Dice-by-threshold curve with its maximum `peak` at the cut `peak_at`."""
    cuts = np.asarray(CUT_POINTS)
    return peak - np.abs(cuts - peak_at)


def test_validations_are_ranked_by_their_dice_at_their_tuned_threshold() -> None:
    progress = RunProgress()
    centred, shifted = _curve(0.5, 0.80), _curve(0.2, 0.90)  # shifted: worse at 0.5, better once tuned
    assert progress.record_validation(3, float(centred[CUT_POINTS.index(0.5)]), 0, centred)
    assert progress.record_validation(6, float(shifted[CUT_POINTS.index(0.5)]), 0, shifted)
    assert (progress.best_epoch, progress.threshold) == (6, 0.2)
    assert progress.threshold_dice == 0.90
    assert progress.best_dice == float(shifted[CUT_POINTS.index(0.5)])  # the kept one's Dice at 0.5
    assert not progress.record_validation(9, 0.85, 0, _curve(0.5, 0.85))  # better at 0.5, not tuned
    assert progress.best_epoch == 6


def test_early_stop_counts_validations_without_a_better_tuned_dice() -> None:
    progress = RunProgress()
    progress.record_validation(1, 0.8, 2, _curve(0.5, 0.8))
    progress.record_validation(2, 0.7, 2, _curve(0.5, 0.7))
    assert not progress.stopped_early
    progress.record_validation(3, 0.75, 2, _curve(0.5, 0.75))
    assert progress.stopped_early


def test_a_run_resumed_from_before_thresholds_were_tuned_must_beat_its_dice_at_half() -> None:
    progress = RunProgress(best_dice=0.9, best_epoch=4)  # threshold_dice None: an old checkpoint
    assert not progress.record_validation(5, 0.6, 0, _curve(0.5, 0.6))
    assert progress.record_validation(6, 0.9, 0, _curve(0.3, 0.95))
    assert (progress.best_epoch, progress.threshold) == (6, 0.3)
