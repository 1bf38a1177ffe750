"""The live training-loss / validation-Dice plot docked in napari (the same drawing as the saved PNGs)."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QVBoxLayout, QWidget

from voxseg.training.plots import draw_training_curves


class CurvesWidget(QWidget):
    """Redrawn at every validation; the best Dice is circled."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(8, 3), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.updates = 0

    def update_curves(
        self,
        losses: list[tuple[int, float]],
        dices: list[tuple[int, float]],
        best: tuple[int, float] | None,
    ) -> None:
        draw_training_curves(self.figure, losses, dices, best)
        self.canvas.draw_idle()
        self.updates += 1
