"""Training-loss and validation-Dice curves: their history, kept by a listener on the engine's events,
and their drawing, as a PNG (matplotlib, no display needed) or in napari."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from voxseg.runtime.files import atomic_write
from voxseg.training.events import EpochEnd, Event, RunStarted, ValidationEnd

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

#: the terms of a loss of several (losses.SelfSupervisedObjective), as the curves' legend names them
TERM_NAMES = {"ncut": "N-cut", "reconstruction": "reconstruction (MSE)", "partition": "partition (Dice-CE)"}
Points = list[tuple[int, float]]


@dataclass
class CurveHistory:
    """The training-loss and validation-Dice curves of a run, a resumed run's earlier epochs included,
    and each term of a loss of several: what the saved plots and napari's live plot draw."""

    losses: Points = field(default_factory=list)
    dices: Points = field(default_factory=list)
    best: tuple[int, float] | None = None
    terms: dict[str, Points] = field(default_factory=dict)

    def add_epoch(self, event: EpochEnd) -> None:
        """An epoch from a resumed run's history (its validation included)."""
        self._add_losses(event)
        if event.val_dice is not None:
            self.dices.append((event.epoch, event.val_dice))
            if self.best is None or event.val_dice > self.best[1]:
                self.best = (event.epoch, event.val_dice)

    def _add_losses(self, event: EpochEnd) -> None:
        self.losses.append((event.epoch, event.train_loss))
        for name, value in event.loss_terms.items():
            self.terms.setdefault(name, []).append((event.epoch, value))

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            for past in event.history:
                self.add_epoch(past)
        elif isinstance(event, ValidationEnd):
            self.dices.append((event.epoch, event.dice))
            self.best = (event.best_epoch, event.best_dice)
        elif isinstance(event, EpochEnd):
            self._add_losses(event)


class TrainingCurves:
    """Two panels side by side, training loss (and each of its terms) and validation Dice; the best
    Dice is marked and labelled. Shared by the PNGs and napari. The axes are built once and `update`
    only moves the lines: rebuilding them at every validation cost napari's GUI thread 130 ms each
    time (measured on 2 cores), CPU time the training steps' threads wait for."""

    def __init__(self, figure: Figure) -> None:
        import numpy as np
        from matplotlib.ticker import MaxNLocator

        self.figure = figure
        self.loss_axes, self.dice_axes = figure.subplots(1, 2)
        (self.loss_line,) = self.loss_axes.plot([], [], color="tab:blue", marker=".")
        (self.dice_line,) = self.dice_axes.plot([], [], color="tab:green", marker="o")
        self.term_lines: dict[str, Line2D] = {}
        self.best_marker = self.dice_axes.scatter(
            np.empty(0), np.empty(0), s=120, facecolors="none", edgecolors="tab:red", zorder=3
        )
        self.best_text = self.dice_axes.annotate("", (0, 0), textcoords="offset points", xytext=(6, -14))
        self.loss_axes.set(title="Training loss", xlabel="epoch", ylabel="loss")
        self.dice_axes.set(title="Validation Dice", xlabel="epoch", ylabel="Dice", ylim=(0, 1))
        for axes in (self.loss_axes, self.dice_axes):
            axes.grid(alpha=0.3)
            axes.xaxis.set_major_locator(MaxNLocator(integer=True))

    def update(self, history: CurveHistory) -> None:
        import numpy as np

        for line, points in ((self.loss_line, history.losses), (self.dice_line, history.dices)):
            _set_points(line, points)
        for name, points in history.terms.items():
            if name not in self.term_lines:  # made on the first epoch that has the term
                label = TERM_NAMES.get(name, name)
                (self.term_lines[name],) = self.loss_axes.plot([], [], marker=".", linewidth=1, label=label)
                self.loss_line.set_label("total")
                self.loss_axes.legend(fontsize="small")
            _set_points(self.term_lines[name], points)
        best = history.best
        self.best_marker.set_offsets(np.array([best]) if best is not None else np.empty((0, 2)))
        self.best_text.set_visible(best is not None)
        if best is not None:
            self.best_text.set_text(f"best {best[1]:.3f} @ {best[0]}")
            self.best_text.xy = best
        self.loss_axes.relim()
        self.loss_axes.autoscale_view()
        self.dice_axes.relim()
        self.dice_axes.autoscale_view(scaley=False)  # Dice stays on 0-1


def _set_points(line: Line2D, points: Points) -> None:
    line.set_data(*(zip(*points, strict=True) if points else ([], [])))


def save_training_curves(path: Path, history: CurveHistory) -> None:
    """The curves on a fresh figure, as a PNG written atomically."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    TrainingCurves(figure).update(history)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
