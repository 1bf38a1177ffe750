"""The curves a run draws (saved PNGs and napari's dock): the loss, each term of a loss of several,
and the validation Dice with the best one marked."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from voxseg.training.events import EpochEnd, RunStarted, ValidationEnd
from voxseg.training.plots import TERM_NAMES, CurveHistory, TrainingCurves, save_training_curves


def _epoch(epoch: int, loss: float, dice: float | None = None, **terms: float) -> EpochEnd:
    return EpochEnd(epoch, 3, loss, dice, 1e-3, 1.0, loss_terms=terms)


def test_each_loss_term_gets_its_own_line_beside_the_total(tmp_path: Path) -> None:
    history = CurveHistory()
    history(RunStarted(tmp_path, 3, 4, "cpu", 2, (_epoch(1, 1.0, 0.5, ncut=0.4, partition=0.6),)))
    history(ValidationEnd(2, 0.7, 0.7, 2, True, None, None))
    history(_epoch(2, 0.8, 0.7, ncut=0.3, partition=0.5))
    assert history.terms == {"ncut": [(1, 0.4), (2, 0.3)], "partition": [(1, 0.6), (2, 0.5)]}
    assert history.best == (2, 0.7)

    curves = TrainingCurves(Figure())
    curves.update(history)
    labels = [line.get_label() for line in curves.loss_axes.get_lines()]
    assert labels == ["total", TERM_NAMES["ncut"], TERM_NAMES["partition"]]
    assert list(curves.term_lines["partition"].get_ydata()) == [0.6, 0.5]
    save_training_curves(tmp_path / "curves.png", history)
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_a_loss_of_one_term_draws_one_line_without_a_legend() -> None:
    history = CurveHistory()
    history(_epoch(1, 1.0))
    curves = TrainingCurves(Figure())
    curves.update(history)
    assert len(curves.loss_axes.get_lines()) == 1 and curves.loss_axes.get_legend() is None
