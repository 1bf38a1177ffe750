"""The Train dock widget: a form over TrainConfig, Start/Stop, progress, log, live curves.

It builds the same TrainConfig as the CLI and iterates the same `TrainingSession.events()` in a
napari worker thread; everything it shows comes from those events and the `voxseg` logger.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from voxseg.config import RESUME_OVERRIDES, TrainConfig
from voxseg.errors import ConfigError, VoxsegError
from voxseg.napari.dock import LayerCombo, RunDock, fill_combo
from voxseg.napari.form import TRAIN_FORM, Field, field_errors, padding_summary
from voxseg.napari.inputs import input_value
from voxseg.napari.layer_data import layer_problems, write_layer_dataset
from voxseg.napari.training_display import TrainingDisplay
from voxseg.options import AUGMENTATION, DATA
from voxseg.training.session import TrainingSession

if TYPE_CHECKING:
    import napari

FOLDERS, LAYERS = "folders", "layers"
#: the data choices without labels: WNet3D trains on the images alone
UNLABELLED_FOLDER = "image folder, no labels (self-supervised, WNet3D)"
UNLABELLED_LAYER = "image layer, no labels (self-supervised, WNet3D)"
SELF_SUPERVISED_MODEL = "WNet3D"


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


class TrainWidget(TrainingDisplay, RunDock):
    """Data / Augmentation / Training sections, then Start/Stop, progress and the log."""

    log_height = 140
    stopping_text = "Stopping after the batch in progress; the model will be saved…"

    def __init__(
        self, napari_viewer: napari.viewer.Viewer | napari.components.ViewerModel | None = None
    ) -> None:
        self.session: TrainingSession | None = None
        self._reset_run_state()
        super().__init__(napari_viewer, TRAIN_FORM)
        self.start_repainting()

    # -- building ------------------------------------------------------------------------------

    def build(self, column: QVBoxLayout) -> None:
        column.addWidget(self._source_box())
        for section in self.form.sections:
            box, rows = self.section_box(section)
            if section == DATA:
                self.folder_rows = [self.inputs["images"], self.inputs["labels"]]
            if section == AUGMENTATION:
                self.padding_label = QLabel()
                self.padding_label.setWordWrap(True)
                rows.addRow("Padding", self.padding_label)
            column.addWidget(box)
        column.addLayout(self._settings_buttons())
        column.addWidget(self._resume_box())
        self.show_preview = QCheckBox("Show validation volume and prediction as layers")
        column.addWidget(self.show_preview)
        self.add_run_controls(column)
        save_log = QPushButton("Save log…")
        save_log.clicked.connect(self._ask_save_log)
        column.addWidget(save_log)

    def _source_box(self) -> QGroupBox:
        box = QGroupBox("Data source")
        rows = QFormLayout(box)
        self.source = QComboBox()
        self.source.addItems([FOLDERS, LAYERS, UNLABELLED_FOLDER, UNLABELLED_LAYER])
        self.source.setToolTip(
            "train from folders of TIFFs, or from an image and a labels layer; without labels, WNet3D "
            "trains on the images alone"
        )
        self.source.currentTextChanged.connect(self._source_changed)
        rows.addRow("Data from", self.source)
        self.image_layer = LayerCombo(self.refresh_layer_choices)
        self.label_layer = LayerCombo(self.refresh_layer_choices)
        for name, combo, text in (
            ("image_layer", self.image_layer, "Image layer"),
            ("label_layer", self.label_layer, "Labels layer"),
        ):
            combo.currentTextChanged.connect(self.revalidate)
            rows.addRow(text, self.with_error(name, combo))
        self.layer_rows = [self.image_layer, self.label_layer]
        return box

    def _settings_buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        for text, action in (
            ("Load settings…", self._ask_load_settings),
            ("Save settings…", self._ask_save_settings),
        ):
            button = QPushButton(text)
            button.clicked.connect(action)
            row.addWidget(button)
        return row

    def _resume_box(self) -> QGroupBox:
        box = QGroupBox("Resume (optional)")
        rows = QFormLayout(box)
        self.resume_row = self.make_input(Field("resume", "Run folder", "", "folder"))
        self.resume_row.setToolTip(
            "continue this run folder from its last epoch: its own settings are used; only "
            + ", ".join(RESUME_OVERRIDES).replace("_", " ")
            + " come from this form"
        )
        rows.addRow("Run folder", self.with_error("resume", self.resume_row))
        return box

    # -- values and validation -----------------------------------------------------------------

    @property
    def resume_dir(self) -> Path | None:
        text = self.resume_row.line.text().strip()  # type: ignore[attr-defined]
        return Path(text).expanduser() if text else None

    @property
    def from_layers(self) -> bool:
        return self.source.currentText() in (LAYERS, UNLABELLED_LAYER)

    @property
    def without_labels(self) -> bool:
        return self.source.currentText() in (UNLABELLED_FOLDER, UNLABELLED_LAYER)

    def values(self) -> dict[str, Any]:
        """The form's values; without labels, the labels folder is left out whatever it holds."""
        values = super().values()
        return {**values, "labels": ""} if self.without_labels else values

    def problems(self, values: dict[str, Any]) -> dict[str, str]:
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
        if self.without_labels:  # the labels field is left out, whatever it (or a placeholder) holds
            errors.pop("labels", None)
        if self.from_layers and self.resume_dir is None:
            errors.update(self._layer_errors())
        self.padding_label.setText(padding_summary(values))
        return errors

    def _layer_errors(self) -> dict[str, str]:
        errors = {}
        image, label = self.chosen_layer(self.image_layer), self.chosen_layer(self.label_layer)
        if image is None:
            errors["image_layer"] = "choose the image layer to train on"
        if self.without_labels:
            shape = np.shape(image.data) if image is not None else ()
            return errors or layer_problems(image.name, shape, image.name, shape)
        if label is None:
            errors["label_layer"] = "choose the labels layer that goes with it"
        if image is not None and label is not None:
            errors = layer_problems(image.name, np.shape(image.data), label.name, np.shape(label.data))
        return errors

    def _source_changed(self, *_: Any) -> None:
        image_layer, label_layer = self.layer_rows
        images_row, labels_row = self.folder_rows
        image_layer.setEnabled(self.from_layers)
        label_layer.setEnabled(self.from_layers and not self.without_labels)
        images_row.setEnabled(not self.from_layers)
        labels_row.setEnabled(not self.from_layers and not self.without_labels)
        model = self.inputs["model"]
        if self.without_labels:  # the one model that trains without labels
            self.set_values({"model": SELF_SUPERVISED_MODEL})
        elif input_value(model) == SELF_SUPERVISED_MODEL:
            self.set_values({"model": TrainConfig.model})
        model.setEnabled(not self.without_labels)
        self.revalidate()

    def refresh_layer_choices(self, *_: Any) -> None:
        if self.viewer is None:
            return
        from napari.layers import Image, Labels

        images = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        labels = [layer.name for layer in self.viewer.layers if isinstance(layer, Labels)]
        fill_combo(self.image_layer, images)
        fill_combo(self.label_layer, labels + images)  # labels saved as plain TIFFs often open as images
        self._source_changed()

    # -- settings files ------------------------------------------------------------------------

    def save_settings(self, path: str | Path) -> None:
        """The same YAML `voxseg train --config` reads."""
        Path(path).write_text(TRAIN_FORM.config_from_values(self.values()).to_yaml(), encoding="utf-8")
        self.status.setText(f"Settings saved to {path}")

    def load_settings(self, path: str | Path) -> None:
        try:
            config = TrainConfig.from_yaml(path)
            if config._extra:
                config.resolved()  # names the unknown options
        except VoxsegError as exc:
            self.show_error(f"error: {exc}")
            return
        self.set_values(TRAIN_FORM.display_values(config))
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

    def launch(self) -> bool:
        """Train in a worker thread, iterating the session's events."""
        from napari.qt.threading import create_worker

        try:
            config = self._config_for_run()
        except VoxsegError as exc:
            self.show_error(f"error: {exc}")
            return False
        self._reset_run_state()
        self._remove_curves()
        self.session = TrainingSession(config, stop_event=self.stop_event, resume=self.resume_dir)
        worker = create_worker(
            _run_events,
            self.session,
            _start_thread=False,
            _connect={"yielded": self._on_event, "errored": self._on_error, "finished": self._on_finished},
        )
        self.append_log(f"--- start: {config.model}, {config.epochs} epoch(s), results in {config.results}")
        self.repaint_timer.start()
        self.start_worker(worker, "Loading and checking the data…")
        return True

    def stop(self) -> None:
        """Stop after the batch in progress; the engine saves the weights and marks the run stopped."""
        if self.running:
            self.stop_requested_at = time.perf_counter()
        super().stop()

    def _config_for_run(self) -> TrainConfig:
        if self.resume_dir is not None:
            typed = TRAIN_FORM.config_from_values(self.values())
            overrides = {name: getattr(typed, name) for name in RESUME_OVERRIDES}
            return TrainConfig.for_resume(self.resume_dir, overrides).resolved()
        config = TRAIN_FORM.config_from_values(self.values())
        if self.from_layers:
            image = self.chosen_layer(self.image_layer)
            label = None if self.without_labels else self.chosen_layer(self.label_layer)
            images, labels = write_layer_dataset(
                Path(config.results).expanduser(),
                image.name,
                np.asarray(image.data),
                None if label is None else label.name,
                None if label is None else np.asarray(label.data),
                tuple(image.scale),
            )
            saved = f"layer {image.name!r}" if label is None else f"layers {image.name!r} and {label.name!r}"
            self.append_log(f"{saved} saved to {images.parent}")
            config = dataclasses.replace(config, images=images, labels=labels)
        return config.resolved()

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, WorkerFailure):
            exc = exc.original
        if isinstance(exc, VoxsegError):
            text = f"error: {exc}"
        else:
            text = f"training failed: {type(exc).__name__}: {exc}"
        self.show_error(text)
        self.append_log(text)

    def _on_finished(self) -> None:
        self.repaint_timer.stop()
        self._repaint()
        if self.last_end is None and self.last_error is None and self.stop_event.is_set():
            self.status.setText("Stopped before training began: nothing was created")
        self.session = None
        self.run_finished()
