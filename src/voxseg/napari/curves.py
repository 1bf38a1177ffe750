"""The live training-loss / validation-Dice plot docked in napari (the same drawing as the saved PNGs)."""

from __future__ import annotations

import contextlib
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QVBoxLayout, QWidget

from voxseg.training.plots import CurveHistory, TrainingCurves


class CurvesWidget(QWidget):
    """Updated at every validation (the lines move; the axes are built once); the best Dice is circled."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(8, 3), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.curves = TrainingCurves(self.figure)
        self.updates = 0

    def update_curves(self, history: CurveHistory) -> None:
        self.curves.update(history)
        self.canvas.draw_idle()
        self.updates += 1


def dock(viewer: Any, curves: CurvesWidget) -> CurvesWidget:
    """Docked at the bottom of the viewer's window; a bare ViewerModel has none: shown on its own."""
    window = getattr(viewer, "window", None)
    if window is not None:
        window.add_dock_widget(curves, name="voxseg training curves", area="bottom")
    else:
        curves.show()
    return curves


def undock(viewer: Any, curves: CurvesWidget) -> None:
    window = getattr(viewer, "window", None)
    if window is not None:
        with contextlib.suppress(Exception):  # the user may have closed that dock already
            window.remove_dock_widget(curves)
