"""The skeleton both dock widgets share: a form generated from a declared config, its checks, Start/Stop,
progress, status, log, and one napari worker at a time.

`RunDock` builds the scrolling column and the run controls, keeps the inputs and their error lines,
refuses Start while a field is bad, forwards the `voxseg` log to the panel while a worker runs, and
stops that worker (one `threading.Event`, the core checks it between batches) when napari quits.
The Train and Predict widgets add their own sections and say what Start runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from voxseg.napari.form import ConfigForm, Field
from voxseg.napari.inputs import (
    ERROR_STYLE,
    LogRelay,
    add_run_controls,
    input_value,
    make_input,
    set_input_value,
    show_errors,
    with_error,
)


class LayerCombo(QComboBox):
    """A combo box of layer names that lists them afresh whenever it opens (layers get renamed)."""

    def __init__(self, refresh: Callable[[], None]) -> None:
        super().__init__()
        self._refresh = refresh

    def showPopup(self) -> None:  # noqa: N802 (Qt's name)
        self._refresh()
        super().showPopup()


def fill_combo(combo: QComboBox, names: Iterable[str]) -> None:
    """Replace a combo's items, keeping its choice when it is still there, without change signals."""
    names = list(names)
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    if current in names:
        combo.setCurrentText(current)
    combo.blockSignals(False)


class RunDock(QWidget):
    """A form over `form`'s config, then Start/Stop, progress, status and log; one worker at a time.

    Subclasses build their column in `build`, check their own inputs in `problems`, and start their
    worker in `launch`; the worker must call `run_finished` (its `finished` signal) when it ends.
    """

    #: the log panel's minimum height (pixels)
    log_height = 100
    #: what the status line says while the worker finishes the batch in progress
    stopping_text = "Stopping after the batch in progress…"

    def __init__(self, viewer: Any, form: ConfigForm) -> None:
        super().__init__()
        self.viewer = viewer
        self.form = form
        self.inputs: dict[str, QWidget] = {}
        self.error_labels: dict[str, QLabel] = {}
        self.worker: Any = None
        self.stop_event = threading.Event()
        self.last_error: str | None = None

        content = QWidget()
        column = QVBoxLayout(content)
        self.build(column)
        column.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(content)
        content.setMinimumWidth(380)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)

        self.log_relay = LogRelay()
        self.log_relay.message.connect(self.append_log)
        self.set_values(form.default_values())
        if viewer is not None:
            events = viewer.layers.events
            for event in (events.inserted, events.removed, events.changed):
                event.connect(self.refresh_layer_choices)
        self.refresh_layer_choices()
        self.revalidate()
        app = QApplication.instance()
        if app is not None:  # napari quitting mid-run: stop the worker before the interpreter goes
            app.aboutToQuit.connect(self.shutdown)

    # -- building (subclasses) -------------------------------------------------------------------

    def build(self, column: QVBoxLayout) -> None:
        """The widget's boxes, top to bottom; the default is the form's sections and the run controls."""
        for section in self.form.sections:
            column.addWidget(self.section_box(section)[0])
        self.add_run_controls(column)

    def section_box(self, section: str) -> tuple[QGroupBox, QFormLayout]:
        """A titled box with one row (input and its error line) per field of `section`."""
        box = QGroupBox(section)
        rows = QFormLayout(box)
        for field in (f for f in self.form.fields if f.section == section):
            self.inputs[field.name] = self.make_input(field)
            rows.addRow(field.label, self.with_error(field.name, self.inputs[field.name]))
        return box, rows

    def make_input(self, field: Field) -> QWidget:
        widget = make_input(field, self.revalidate, self)
        widget.setToolTip(field.help)
        return widget

    def with_error(self, name: str, widget: QWidget) -> QWidget:
        """The input with its error line under it (hidden while the value is fine)."""
        holder, self.error_labels[name] = with_error(widget)
        return holder

    def add_run_controls(self, column: QVBoxLayout) -> None:
        controls = add_run_controls(column, self._start_or_stop, self.log_height)
        self.start_button, self.progress, self.status, self.log_view = controls

    def refresh_layer_choices(self, *_: Any) -> None:
        """List the viewer's layers in the widget's layer choices (none by default)."""

    def chosen_layer(self, combo: QComboBox) -> Any:
        """The viewer's layer named in `combo`; None when there is none of that name."""
        name = combo.currentText()
        if self.viewer is None or not name or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    # -- values and checks -----------------------------------------------------------------------

    def values(self) -> dict[str, Any]:
        """The form as config field values (numbers as the boxes hold them, paths as text)."""
        return {field.name: input_value(self.inputs[field.name]) for field in self.form.fields}

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            set_input_value(self.inputs[name], value)

    def problems(self, values: dict[str, Any]) -> dict[str, str]:
        """Field name -> message for every bad value (the CLI's wording)."""
        raise NotImplementedError

    def revalidate(self, *_: Any) -> dict[str, str]:
        """Show each bad value under its field; return them all (empty when Start may go)."""
        if not hasattr(self, "start_button"):  # still building
            return {}
        errors = self.problems(self.values())
        show_errors(self.error_labels, errors)
        return errors

    # -- running ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _start_or_stop(self) -> None:
        if self.running:
            self.stop()
        else:
            self.start()

    def start(self) -> bool:
        """Run in a worker thread; refused (with the reason shown) while a field is bad."""
        if self.running:
            return False
        errors = self.revalidate()
        if errors:
            first = next(iter(errors.values()))
            more = f" (and {len(errors) - 1} more, shown in red)" if len(errors) > 1 else ""
            self.show_error(f"Cannot start: {first}{more}")
            return False
        self.stop_event = threading.Event()
        self.last_error = None
        return self.launch()

    def launch(self) -> bool:
        """Create and start the worker (via `start_worker`); False, with the reason shown, if it cannot."""
        raise NotImplementedError

    def start_worker(self, worker: Any, status: str) -> None:
        """Start `worker`, with the `voxseg` log in the panel until it ends."""
        logger = logging.getLogger("voxseg")
        logger.addHandler(self.log_relay)
        logger.setLevel(logging.INFO)
        self.worker = worker
        self.start_button.setText("Stop")
        self.status.setStyleSheet("")
        self.status.setText(status)
        worker.start()

    def stop(self) -> None:
        """Ask the worker to stop after the batch in progress."""
        if not self.running:
            return
        self.stop_event.set()
        self.start_button.setText("Stopping…")
        self.start_button.setEnabled(False)
        self.status.setText(self.stopping_text)

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop a running worker and wait (bounded) for it to end."""
        if not self.running:
            return
        self.stop()
        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.05)

    def run_finished(self) -> None:
        """The worker ended (whatever ended it): Start again."""
        logging.getLogger("voxseg").removeHandler(self.log_relay)
        self.worker = None
        self.start_button.setText("Start")
        self.start_button.setEnabled(True)

    def show_error(self, text: str) -> None:
        self.last_error = text
        self.status.setStyleSheet(ERROR_STYLE)
        self.status.setText(text)

    def append_log(self, line: str) -> None:
        self.log_view.appendPlainText(line)
