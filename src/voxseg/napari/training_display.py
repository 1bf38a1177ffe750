"""What the Train widget shows of a run, from the engine's events alone: progress and ETA, status,
log, live curves and the validation preview as layers.

`TrainingDisplay` is mixed into `TrainWidget` (a `RunDock`): it uses the dock's progress bar, status
line, log panel and viewer, and the widget's "show preview" box.
"""

from __future__ import annotations

import time
from typing import Any

from qtpy.QtCore import QTimer

from voxseg.napari.curves import CurvesWidget, dock, undock
from voxseg.napari.output_layers import PROBABILITY_STYLE, put_layer
from voxseg.training.events import BatchEnd, EpochEnd, Event, RunEnd, RunStarted, ValidationEnd
from voxseg.training.plots import CurveHistory
from voxseg.training.summary import best_dice_text

#: plots appear once there are two Dice values to draw a line through (as the origin document says)
PLOTS_AFTER_VALIDATIONS = 2
#: while training, the progress bar and the log are updated at most this often (seconds)
REPAINT_S = 1.0
PREVIEW_LAYERS = ("validation image", "validation labels", "validation prediction")
#: the owner of the preview layers (see `output_layers`)
PREVIEW = "training preview"


class TrainingDisplay:
    """The event handlers and the repaint that show a run in the widget."""

    viewer: Any
    progress: Any
    status: Any
    log_view: Any
    show_preview: Any
    last_error: str | None
    curves: CurvesWidget | None = None
    show_error: Any  # the dock's

    def start_repainting(self) -> None:
        """The timer that gathers progress and log lines while training (see `_repaint`)."""
        self.pending_log: list[str] = []
        self.pending_progress: tuple[int, str] | None = None
        self.repaint_timer = QTimer(self)  # type: ignore[arg-type]
        self.repaint_timer.setInterval(int(REPAINT_S * 1000))
        self.repaint_timer.timeout.connect(self._repaint)

    def _reset_run_state(self) -> None:
        self.curve_history = CurveHistory()
        self.validations = 0
        self.total_batches = 0
        self.done_batches = 0
        self.run_started_at = time.perf_counter()
        self.stop_requested_at: float | None = None
        self.stop_to_saved_seconds: float | None = None
        self.last_end = None
        self.last_error = None

    def _on_event(self, event: Event) -> None:
        self.curve_history(event)
        if isinstance(event, RunStarted):
            self._on_started(event)
        elif isinstance(event, BatchEnd):
            self._on_batch(event)
        elif isinstance(event, ValidationEnd):
            self._on_validation(event)
        elif isinstance(event, EpochEnd):
            if event.val_dice is not None and self.validations >= PLOTS_AFTER_VALIDATIONS:
                self._show_curves()
        elif isinstance(event, RunEnd):
            self._on_run_end(event)

    def _on_started(self, event: RunStarted) -> None:
        self.run_dir = event.run_dir
        self.total_batches = (event.epochs - event.start_epoch + 1) * event.batches_per_epoch
        self.progress.setRange(0, max(1, self.total_batches))
        self.progress.setValue(0)
        self.run_started_at = time.perf_counter()
        self.status.setText(f"Training on {event.device} in {event.run_dir}")

    def _on_batch(self, event: BatchEnd) -> None:
        """Counted at every batch, shown by the next repaint (see `_repaint`)."""
        self.done_batches += 1
        elapsed = time.perf_counter() - self.run_started_at
        remaining = elapsed / self.done_batches * (self.total_batches - self.done_batches)
        self.pending_progress = (
            self.done_batches,
            f"epoch {event.epoch} · batch {event.batch}/{event.batches} · loss {event.loss:.3f} · "
            f"ETA {_clock(remaining)}",
        )

    def _repaint(self) -> None:
        """Show the progress and log lines gathered since the last repaint, at once.

        While training this runs at most every `REPAINT_S` seconds: each update of the window costs
        the GUI thread and the window's compositing CPU time that the training step's threads wait
        for (at every batch and log line, a run from the widget reached 0.79-0.82× the command
        line's patches/s on 2 cores; see docs/performance.md).
        """
        if self.pending_log:
            self.log_view.appendPlainText("\n".join(self.pending_log))
            self.pending_log.clear()
        if self.pending_progress is not None:
            value, text = self.pending_progress
            self.progress.setValue(value)
            self.progress.setFormat(text)
            self.pending_progress = None

    def _on_validation(self, event: ValidationEnd) -> None:
        self.validations += 1
        if self.show_preview.isChecked() and event.preview is not None and self.viewer is not None:
            self._show_preview(event)

    def _remove_curves(self) -> None:
        """A new run starts without the last run's curves (they reappear after its 2nd validation)."""
        if self.curves is not None:
            undock(self.viewer, self.curves)
        self.curves = None

    def _show_curves(self) -> None:
        if self.curves is None:
            self.curves = dock(self.viewer, CurvesWidget())
        self.curves.update_curves(self.curve_history)

    def _show_preview(self, event: ValidationEnd) -> None:
        """The validation volume, its labels and the model's foreground probability (0-1), placed where
        the part lies in its file (napari's scale is the voxel size)."""
        preview = event.preview
        assert preview is not None and self.viewer is not None
        scale = preview.voxel_size or (1.0, 1.0, 1.0)
        place = {
            "scale": scale,
            "translate": tuple(o * s for o, s in zip(preview.origin, scale, strict=True)),
        }
        image, label, prediction = PREVIEW_LAYERS
        put_layer(self.viewer, image, PREVIEW, preview.image, place, labels=False)
        put_layer(self.viewer, label, PREVIEW, preview.label, place, labels=True, opacity=0.35)
        shown = put_layer(
            self.viewer, prediction, PREVIEW, preview.probability, place, labels=False, **PROBABILITY_STYLE
        )
        shown.metadata["epoch"] = event.epoch

    def _on_run_end(self, event: RunEnd) -> None:
        self.last_end = event
        if self.stop_requested_at is not None:
            self.stop_to_saved_seconds = time.perf_counter() - self.stop_requested_at
        summary = event.summary
        best_text = best_dice_text(summary)
        weights = event.run_dir / ("best.pth" if summary.get("best_val_dice") is not None else "last.pth")
        if event.status == "stopped":
            text = (
                f"Stopped after {summary['epochs_completed']} full epoch(s): last.pth saved; {best_text}. "
                f"Weights: {weights}"
            )
        elif event.status == "completed":
            text = f"Done: {best_text}. Weights: {weights}"
        else:
            self.show_error(f"Failed: {event.error}. Run folder: {event.run_dir}")
            return
        self.status.setText(text)
        if self.curve_history.dices and self.validations >= PLOTS_AFTER_VALIDATIONS:
            self._show_curves()

    def append_log(self, line: str) -> None:
        """Shown at once, or while training by the next repaint."""
        self.pending_log.append(line)
        if not self.repaint_timer.isActive():
            self._repaint()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
