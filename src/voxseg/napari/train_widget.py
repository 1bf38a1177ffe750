"""The Train dock widget: a form over TrainConfig, Start/Stop, progress, log, live curves.

It builds the same TrainConfig as the CLI and iterates the same `TrainingSession.events()` in a
napari worker thread; everything it shows comes from those events and the `voxseg` logger.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from voxseg.config import RESUME_OVERRIDES, TrainConfig
from voxseg.errors import ConfigError, VoxsegError
from voxseg.napari.curves import CurvesWidget
from voxseg.napari.form import (
    AUGMENTATION,
    DATA,
    FIELDS,
    SECTIONS,
    Field,
    config_from_values,
    default_values,
    display_values,
    field_errors,
    padding_summary,
)
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
from voxseg.napari.layer_data import layer_problems, write_layer_dataset
from voxseg.training.events import BatchEnd, EpochEnd, Event, RunEnd, RunStarted, ValidationEnd
from voxseg.training.session import TrainingSession
from voxseg.training.sinks import CurveHistory
from voxseg.training.summary import best_dice_text

if TYPE_CHECKING:
    import napari

FOLDERS, LAYERS = "folders", "layers"
#: plots appear once there are two Dice values to draw a line through (as the origin document says)
PLOTS_AFTER_VALIDATIONS = 2
#: while training, the progress bar and the log are updated at most this often (seconds)
REPAINT_S = 1.0
PREVIEW_LAYERS = ("validation image", "validation labels", "validation prediction")


class WorkerFailure(Exception):
    """Carries the engine's exception out of the worker thread. Needed because superqt's generator
    worker swallows a RuntimeError (CUDA out of memory is one) without emitting `errored`/`finished`."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def _run_events(session: TrainingSession):
    """The worker's generator: the session's events; a stop during data loading ends quietly."""
    try:
        yield from session.events()
    except KeyboardInterrupt:
        return
    except Exception as exc:
        raise WorkerFailure(exc) from exc


class TrainWidget(QWidget):
    """Data / Augmentation / Training sections, then Start/Stop, progress and the log."""

    def __init__(
        self, napari_viewer: napari.viewer.Viewer | napari.components.ViewerModel | None = None
    ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.inputs: dict[str, QWidget] = {}
        self.error_labels: dict[str, QLabel] = {}
        self.session: TrainingSession | None = None
        self.worker: Any = None
        self.curves: CurvesWidget | None = None
        self.last_end: RunEnd | None = None
        self.last_error: str | None = None
        self._reset_run_state()

        content = QWidget()
        column = QVBoxLayout(content)
        self._build_source(column)
        for section in SECTIONS:
            column.addWidget(self._build_section(section))
        column.addLayout(self._build_settings_buttons())
        column.addLayout(self._build_run_controls())
        column.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(content)
        content.setMinimumWidth(380)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)

        self.pending_log: list[str] = []
        self.pending_progress: tuple[int, str] | None = None
        self.repaint_timer = QTimer(self)
        self.repaint_timer.setInterval(int(REPAINT_S * 1000))
        self.repaint_timer.timeout.connect(self._repaint)
        self.log_relay = LogRelay()
        self.log_relay.message.connect(self.append_log)
        self.set_values(default_values())
        if self.viewer is not None:
            self.viewer.layers.events.inserted.connect(self._refresh_layer_choices)
            self.viewer.layers.events.removed.connect(self._refresh_layer_choices)
            self.viewer.layers.events.changed.connect(self._refresh_layer_choices)
        self._refresh_layer_choices()
        self.revalidate()
        app = QApplication.instance()
        if app is not None:  # napari quitting mid-run: stop cleanly so the run folder is complete
            app.aboutToQuit.connect(self.shutdown)

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop a running training and wait (bounded) for its weights and summary to be written."""
        if not self.running or self.session is None:
            return
        self.session.request_stop()
        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.05)

    # -- building ------------------------------------------------------------------------------

    def _build_source(self, column: QVBoxLayout) -> None:
        box = QGroupBox("Data source")
        form = QFormLayout(box)
        self.source = QComboBox()
        self.source.addItems([FOLDERS, LAYERS])
        self.source.setToolTip("train from folders of TIFFs, or from an image and a labels layer")
        self.source.currentTextChanged.connect(self._source_changed)
        form.addRow("Data from", self.source)
        self.image_layer = QComboBox()
        self.label_layer = QComboBox()
        for name, combo, text in (
            ("image_layer", self.image_layer, "Image layer"),
            ("label_layer", self.label_layer, "Labels layer"),
        ):
            combo.currentTextChanged.connect(self.revalidate)
            form.addRow(text, self._with_error(name, combo))
        self.layer_rows = [self.image_layer, self.label_layer]
        column.addWidget(box)

    def _build_section(self, section: str) -> QGroupBox:
        box = QGroupBox(section)
        form = QFormLayout(box)
        for field in (f for f in FIELDS if f.section == section):
            widget = self._make_input(field)
            self.inputs[field.name] = widget
            widget.setToolTip(field.help)
            form.addRow(field.label, self._with_error(field.name, widget))
        if section == DATA:
            self.folder_rows = [self.inputs["images"], self.inputs["labels"]]
        if section == AUGMENTATION:
            self.padding_label = QLabel()
            self.padding_label.setWordWrap(True)
            form.addRow("Padding", self.padding_label)
        return box

    def _make_input(self, field: Field) -> QWidget:
        return make_input(field, self.revalidate, self)

    def _with_error(self, name: str, widget: QWidget) -> QWidget:
        """The input with its error line under it (hidden while the value is fine)."""
        holder, self.error_labels[name] = with_error(widget)
        return holder

    def _build_settings_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        load = QPushButton("Load settings…")
        load.clicked.connect(self._ask_load_settings)
        save = QPushButton("Save settings…")
        save.clicked.connect(self._ask_save_settings)
        row.addWidget(load)
        row.addWidget(save)
        return row

    def _build_run_controls(self) -> QVBoxLayout:
        column = QVBoxLayout()
        resume_box = QGroupBox("Resume (optional)")
        resume_form = QFormLayout(resume_box)
        resume_field = Field("resume", "Run folder", "", "folder")
        self.resume_row = self._make_input(resume_field)
        self.resume_row.setToolTip(
            "continue this run folder from its last epoch: its own settings are used; only "
            + ", ".join(RESUME_OVERRIDES).replace("_", " ")
            + " come from this form"
        )
        resume_form.addRow("Run folder", self._with_error("resume", self.resume_row))
        column.addWidget(resume_box)
        self.show_preview = QCheckBox("Show validation volume and prediction as layers")
        column.addWidget(self.show_preview)
        controls = add_run_controls(column, self._start_or_stop, log_height=140)
        self.start_button, self.progress, self.status, self.log_view = controls
        save_log = QPushButton("Save log…")
        save_log.clicked.connect(self._ask_save_log)
        column.addWidget(save_log)
        return column

    # -- values and validation -----------------------------------------------------------------

    def values(self) -> dict[str, Any]:
        """The form as TrainConfig field values (numbers as the boxes hold them, paths as text)."""
        return {field.name: input_value(self.inputs[field.name]) for field in FIELDS}

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            set_input_value(self.inputs[name], value)

    @property
    def resume_dir(self) -> Path | None:
        text = self.resume_row.line.text().strip()  # type: ignore[attr-defined]
        return Path(text).expanduser() if text else None

    @property
    def from_layers(self) -> bool:
        return self.source.currentText() == LAYERS

    def revalidate(self, *_: Any) -> dict[str, str]:
        """Show each bad value under its field; return them all (empty when Start may go)."""
        if not hasattr(self, "start_button"):  # still building
            return {}
        values = self.values()
        if self.resume_dir is not None:  # the run's own settings apply; only the overrides are checked
            errors = {
                k: v for k, v in field_errors(values, data_from_layers=True).items() if k in RESUME_OVERRIDES
            }
            try:  # the same check (and message) as starting the resume
                TrainConfig.for_resume(self.resume_dir, {})
            except ConfigError as exc:
                errors["resume"] = str(exc)
        else:
            errors = field_errors(values, data_from_layers=self.from_layers)
        if self.from_layers and self.resume_dir is None:
            errors.update(self._layer_errors())
        show_errors(self.error_labels, errors)
        self.padding_label.setText(padding_summary(values))
        return errors

    def _layer_errors(self) -> dict[str, str]:
        errors = {}
        image, label = self._selected_layer(self.image_layer), self._selected_layer(self.label_layer)
        if image is None:
            errors["image_layer"] = "choose the image layer to train on"
        if label is None:
            errors["label_layer"] = "choose the labels layer that goes with it"
        if image is not None and label is not None:
            errors = layer_problems(image.name, np.shape(image.data), label.name, np.shape(label.data))
        return errors

    def _source_changed(self, *_: Any) -> None:
        for widget in self.layer_rows:
            widget.setEnabled(self.from_layers)
        for row in self.folder_rows:
            row.setEnabled(not self.from_layers)
        self.revalidate()

    def _refresh_layer_choices(self, *_: Any) -> None:
        if self.viewer is None:
            return
        from napari.layers import Image, Labels

        images = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        labels = [layer.name for layer in self.viewer.layers if isinstance(layer, Labels)]
        labels += images  # labels saved as plain TIFFs often open as image layers
        for combo, names in ((self.image_layer, images), (self.label_layer, labels)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._source_changed()

    def _selected_layer(self, combo: QComboBox) -> Any:
        if self.viewer is None or combo.currentText() not in self.viewer.layers:
            return None
        return self.viewer.layers[combo.currentText()]

    # -- settings files ------------------------------------------------------------------------

    def save_settings(self, path: str | Path) -> None:
        """The same YAML `voxseg train --config` reads."""
        Path(path).write_text(config_from_values(self.values()).to_yaml(), encoding="utf-8")
        self.status.setText(f"Settings saved to {path}")

    def load_settings(self, path: str | Path) -> None:
        try:
            config = TrainConfig.from_yaml(path)
            if config._extra:
                config.resolved()  # names the unknown options
        except VoxsegError as exc:
            self._show_error(f"error: {exc}")
            return
        self.set_values(display_values(config))
        self.status.setText(f"Settings loaded from {path}")

    def save_log(self, path: str | Path) -> None:
        Path(path).write_text(self.log_view.toPlainText() + "\n", encoding="utf-8")

    def _ask_load_settings(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load settings", "", "YAML (*.yaml *.yml)")
        if path:
            self.load_settings(path)

    def _ask_save_settings(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save settings", "voxseg.yaml", "YAML (*.yaml *.yml)")
        if path:
            self.save_settings(path)

    def _ask_save_log(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save log", "voxseg-log.txt", "Text (*.txt *.log)")
        if path:
            self.save_log(path)

    # -- running -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _start_or_stop(self) -> None:
        if self.running:
            self.stop()
        else:
            self.start()

    def start(self) -> bool:
        """Start training in a worker thread; refused (with the reason shown) while a field is bad."""
        if self.running:
            return False
        errors = self.revalidate()
        if errors:
            first = next(iter(errors.values()))
            more = f" (and {len(errors) - 1} more, shown in red)" if len(errors) > 1 else ""
            self._show_error(f"Cannot start: {first}{more}")
            return False
        from napari.qt.threading import create_worker

        try:
            config = self._config_for_run()
        except VoxsegError as exc:
            self._show_error(f"error: {exc}")
            return False
        self._reset_run_state()
        self._remove_curves()
        self.session = TrainingSession(config, resume=self.resume_dir)
        logger = logging.getLogger("voxseg")
        logger.addHandler(self.log_relay)
        logger.setLevel(logging.INFO)
        self.worker = create_worker(
            _run_events,
            self.session,
            _start_thread=False,
            _connect={"yielded": self._on_event, "errored": self._on_error, "finished": self._on_finished},
        )
        self.start_button.setText("Stop")
        self.status.setStyleSheet("")
        self.status.setText("Loading and checking the data…")
        self.append_log(f"--- start: {config.model}, {config.epochs} epoch(s), results in {config.results}")
        self.repaint_timer.start()
        self.worker.start()
        return True

    def stop(self) -> None:
        """Stop after the batch in progress; the engine saves the weights and marks the run stopped."""
        if self.session is None:
            return
        self.session.request_stop()
        self.start_button.setText("Stopping…")
        self.start_button.setEnabled(False)
        self.status.setText("Stopping after the batch in progress; the model will be saved…")
        self.stop_requested_at = time.perf_counter()

    def _config_for_run(self) -> TrainConfig:
        if self.resume_dir is not None:
            typed = config_from_values(self.values())
            overrides = {name: getattr(typed, name) for name in RESUME_OVERRIDES}
            return TrainConfig.for_resume(self.resume_dir, overrides).resolved()
        config = config_from_values(self.values())
        if self.from_layers:
            image, label = self._selected_layer(self.image_layer), self._selected_layer(self.label_layer)
            images, labels = write_layer_dataset(
                Path(config.results).expanduser(),
                image.name,
                np.asarray(image.data),
                label.name,
                np.asarray(label.data),
                tuple(image.scale),
            )
            self.append_log(f"layers {image.name!r} and {label.name!r} saved to {images.parent}")
            config = dataclasses.replace(config, images=images, labels=labels)
        return config.resolved()

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
        if self.curves is None:
            return
        window = getattr(self.viewer, "window", None)
        if window is not None:
            with contextlib.suppress(Exception):  # the user may have closed that dock already
                window.remove_dock_widget(self.curves)
        self.curves = None

    def _show_curves(self) -> None:
        if self.curves is None:
            self.curves = CurvesWidget()
            window = getattr(self.viewer, "window", None)  # a bare ViewerModel has no window
            if window is not None:
                window.add_dock_widget(self.curves, name="voxseg training curves", area="bottom")
            else:
                self.curves.show()
        history = self.curve_history
        self.curves.update_curves(history.losses, history.dices, history.best)

    def _show_preview(self, event: ValidationEnd) -> None:
        """The validation volume, its labels and the model's foreground probability (0-1)."""
        preview = event.preview
        assert preview is not None and self.viewer is not None
        name_image, name_label, name_prediction = PREVIEW_LAYERS
        shown = {
            name_image: (preview.image, self.viewer.add_image, {}),
            name_label: (preview.label, self.viewer.add_labels, {"opacity": 0.35}),
            name_prediction: (
                preview.probability,
                self.viewer.add_image,
                {"colormap": "magenta", "blending": "additive", "contrast_limits": (0.0, 1.0)},
            ),
        }
        scale = preview.voxel_size or (1.0, 1.0, 1.0)  # napari's scale is the voxel size
        place = {
            "scale": scale,
            "translate": tuple(o * s for o, s in zip(preview.origin, scale, strict=True)),
        }
        for name, (data, add, style) in shown.items():  # placed where the part lies in its file
            if name in self.viewer.layers:
                self.viewer.layers[name].data = data
                self.viewer.layers[name].scale = place["scale"]
                self.viewer.layers[name].translate = place["translate"]
            else:
                add(data, name=name, **place, **style)
        self.viewer.layers[name_prediction].metadata["epoch"] = event.epoch

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
            self._show_error(f"Failed: {event.error}. Run folder: {event.run_dir}")
            return
        self.status.setText(text)
        if self.curve_history.dices and self.validations >= PLOTS_AFTER_VALIDATIONS:
            self._show_curves()

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, WorkerFailure):
            exc = exc.original
        if isinstance(exc, VoxsegError):
            text = f"error: {exc}"
        else:
            text = f"training failed: {type(exc).__name__}: {exc}"
        self._show_error(text)
        self.append_log(text)

    def _on_finished(self) -> None:
        logging.getLogger("voxseg").removeHandler(self.log_relay)
        self.repaint_timer.stop()
        self._repaint()
        stopped_while_loading = self.session is not None and self.session.stop_event.is_set()
        if self.last_end is None and self.last_error is None and stopped_while_loading:
            self.status.setText("Stopped before training began: nothing was created")
        self.worker = None
        self.session = None
        self.start_button.setText("Start")
        self.start_button.setEnabled(True)

    def _show_error(self, text: str) -> None:
        self.last_error = text
        self.status.setStyleSheet(ERROR_STYLE)
        self.status.setText(text)

    def append_log(self, line: str) -> None:
        """Shown at once, or while training by the next repaint."""
        self.pending_log.append(line)
        if not self.repaint_timer.isActive():
            self._repaint()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
