"""The Predict dock widget: an image layer in; probability, mask and instance labels layers out.

The form is generated from PredictConfig (same labels, help, defaults and checks as `voxseg predict`).
At Start the layer is predicted in memory by `voxseg.Predictor` (the command line's own core) in a
napari worker thread; its results become layers placed like the image (same scale and translate),
and a new run replaces them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, Signal
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

from voxseg.config import PredictConfig
from voxseg.errors import ConfigError, VoxsegError
from voxseg.napari.form import ConfigForm
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

if TYPE_CHECKING:
    import napari

#: options about files on disk: the widget reads a layer and makes layers instead
FILE_OPTIONS = ("input", "output", "save_probabilities", "overwrite")
PREDICT_FORM = ConfigForm(PredictConfig, exclude=FILE_OPTIONS)
#: what `layer.metadata[OUTPUT_KEY]` holds on the layers this widget made (and may replace)
OUTPUT_KEY = "voxseg_prediction"
PROBABILITY, MASK, LABELS = "probability", "mask", "labels"
PROBABILITY_STYLE = {"colormap": "magenta", "blending": "additive", "contrast_limits": (0.0, 1.0)}


class PredictionStopped(Exception):
    """Raised from the progress callback once Stop is pressed: the prediction ends after its batch."""


@dataclass(frozen=True)
class Prediction:
    """The engine's outputs for one volume, read back into memory."""

    probability: np.ndarray
    mask: np.ndarray
    labels: np.ndarray | None
    objects: int | None
    seconds: float


@dataclass(frozen=True)
class Outcome:
    """What the worker hands back: a prediction, or why there is none. The worker never raises."""

    prediction: Prediction | None = None
    error: str | None = None
    stopped: bool = False


def layer_volume(layer: Any) -> Any:
    """The layer's data as predicted: its full-resolution level when it is multiscale."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_problem(layer: Any) -> str | None:
    """Why an image layer cannot be predicted (None when it can)."""
    if layer is None:
        return "choose the image layer to segment"
    shape = tuple(np.shape(layer_volume(layer)))
    if getattr(layer, "rgb", False) or len(shape) != 3:
        return f"image layer {layer.name!r} is not a 3D volume (shape {shape})"
    return None


def inspect_source(values: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The run folder or weights file checked as the engine checks it before reading any weights (the
    path exists; a run folder's config.yaml, weights and model; a weights file's --model), with its
    messages: (field name -> message, a line saying what will be used)."""
    try:
        config = PREDICT_FORM.config_from_values(
            {**PREDICT_FORM.placeholders, "source": values["source"], "model": values["model"]}
        ).resolved()
    except ConfigError:
        return {}, ""  # shown under its field by the form's own checks
    from voxseg.inference import trained

    source = config.source
    assert source is not None
    try:
        name, weights, window, summary = trained.check_source(source, config.model)
    except VoxsegError as exc:
        return {PREDICT_FORM.field_of(str(exc)) or "source": str(exc)}, ""
    if not source.is_dir():
        return {}, f"{name} weights from {source.name}"
    threshold = summary.get("threshold")
    tuned = f"threshold {threshold:.2f} (tuned)" if threshold is not None else "threshold 0.5"
    return {}, f"{name}, {weights.name}, window {'×'.join(map(str, window))}, {tuned}"


def predict_volume(
    config: PredictConfig,
    name: str,
    volume: Any,
    progress: Callable[[str, int, int], None] | None = None,
) -> Prediction:
    """Predict a Z×Y×X array (numpy, dask…) in memory with `voxseg.Predictor`, `voxseg predict`'s
    own core: the same window, normalisation, threshold and instances, and no file written."""
    from voxseg.inference.segmenter import Predictor

    started = time.perf_counter()
    predictor = Predictor.of(config.resolved(optional=("input", "output")))
    report = (lambda done, total: progress(name, done, total)) if progress else None
    result = predictor(volume, config.spacing, report)
    return Prediction(
        probability=result.probability,
        mask=result.mask,
        labels=result.labels,
        objects=None if result.labels is None else int(result.labels.max()),
        seconds=time.perf_counter() - started,
    )


class _ProgressRelay(QObject):
    """The predictor's progress (volume name, windows done, windows in all) to the GUI thread."""

    progress = Signal(str, int, int)


def _run_prediction(
    config: PredictConfig, name: str, volume: Any, stop: threading.Event, relay: _ProgressRelay
) -> Outcome:
    """The worker's function. Every failure becomes an Outcome (superqt's workers may swallow some)."""

    def progress(volume_name: str, done: int, total: int) -> None:
        relay.progress.emit(volume_name, done, total)
        if stop.is_set():
            raise PredictionStopped

    try:
        if stop.is_set():
            return Outcome(stopped=True)
        return Outcome(prediction=predict_volume(config, name, volume, progress))
    except PredictionStopped:
        return Outcome(stopped=True)
    except VoxsegError as exc:
        return Outcome(error=f"error: {exc}")
    except Exception as exc:
        return Outcome(error=f"prediction failed: {type(exc).__name__}: {exc}")


class _LayerCombo(QComboBox):
    """A combo box of layer names that lists them afresh whenever it opens (layers get renamed)."""

    def __init__(self, refresh: Callable[[], None]) -> None:
        super().__init__()
        self._refresh = refresh

    def showPopup(self) -> None:  # noqa: N802 (Qt's name)
        self._refresh()
        super().showPopup()


class PredictWidget(QWidget):
    """Image layer, then Model / Prediction / Instances sections, then Start/Stop, progress and the log."""

    def __init__(
        self, napari_viewer: napari.viewer.Viewer | napari.components.ViewerModel | None = None
    ) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.inputs: dict[str, QWidget] = {}
        self.error_labels: dict[str, QLabel] = {}
        self.worker: Any = None
        self.stop_event = threading.Event()
        self.last_error: str | None = None
        self.last_outcome: Outcome | None = None
        self.done_windows = 0
        self._placement: dict[str, Any] = {}

        content = QWidget()
        column = QVBoxLayout(content)
        column.addWidget(self._build_image_choice())
        for section in PREDICT_FORM.sections:
            column.addWidget(self._build_section(section))
        column.addLayout(self._build_run_controls())
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        content.setMinimumWidth(380)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self.log_relay = LogRelay()
        self.log_relay.message.connect(self.append_log)
        self.progress_relay = _ProgressRelay()
        self.progress_relay.progress.connect(self._on_progress)
        self.set_values(PREDICT_FORM.default_values())
        if self.viewer is not None:
            for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
                event.connect(self._refresh_layer_choices)
        self._refresh_layer_choices()
        app = QApplication.instance()
        if app is not None:  # napari quitting mid-run: stop the worker before the interpreter goes
            app.aboutToQuit.connect(self.shutdown)

    # -- building ------------------------------------------------------------------------------

    def _build_image_choice(self) -> QGroupBox:
        box = QGroupBox("Image")
        form = QFormLayout(box)
        self.image_layer = _LayerCombo(self._refresh_layer_choices)
        self.image_layer.setToolTip("the 3D image layer to segment; the results are added as layers")
        self.image_layer.currentTextChanged.connect(self.revalidate)
        form.addRow("Image layer", self._with_error("image_layer", self.image_layer))
        return box

    def _build_section(self, section: str) -> QGroupBox:
        box = QGroupBox(section)
        form = QFormLayout(box)
        for field in (f for f in PREDICT_FORM.fields if f.section == section):
            widget = make_input(field, self.revalidate, self)
            widget.setToolTip(field.help)
            self.inputs[field.name] = widget
            form.addRow(field.label, self._with_error(field.name, widget))
            if field.name == "source":
                self.source_info = QLabel()
                self.source_info.setWordWrap(True)
                self.source_info.hide()
                form.addRow("", self.source_info)
        return box

    def _with_error(self, name: str, widget: QWidget) -> QWidget:
        holder, self.error_labels[name] = with_error(widget)
        return holder

    def _build_run_controls(self) -> QVBoxLayout:
        column = QVBoxLayout()
        controls = add_run_controls(column, self._start_or_stop, log_height=100)
        self.start_button, self.progress, self.status, self.log_view = controls
        return column

    # -- values and validation -----------------------------------------------------------------

    def values(self) -> dict[str, Any]:
        """The form as PredictConfig field values (numbers as the boxes hold them, paths as text)."""
        return {name: input_value(widget) for name, widget in self.inputs.items()}

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            set_input_value(self.inputs[name], value)

    def revalidate(self, *_: Any) -> dict[str, str]:
        """Show each bad value under its field; return them all (empty when Start may go)."""
        if not hasattr(self, "start_button"):  # still building
            return {}
        values = self.values()
        errors, _ = PREDICT_FORM.check(values, fallback="source")
        about = ""
        if "source" not in errors and "model" not in errors:
            problems, about = inspect_source(values)
            errors.update(problems)
        self.source_info.setText(about)
        self.source_info.setVisible(bool(about))
        problem = layer_problem(self.selected_layer())
        if problem is not None:
            errors["image_layer"] = problem
        show_errors(self.error_labels, errors)
        return errors

    def selected_layer(self) -> Any:
        name = self.image_layer.currentText()
        if self.viewer is None or not name or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def _refresh_layer_choices(self, *_: Any) -> None:
        """Image layers, without the probability layers this widget made."""
        if self.viewer is None:
            return
        from napari.layers import Image

        names = [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, Image) and OUTPUT_KEY not in layer.metadata
        ]
        current = self.image_layer.currentText()
        self.image_layer.blockSignals(True)
        self.image_layer.clear()
        self.image_layer.addItems(names)
        if current in names:
            self.image_layer.setCurrentText(current)
        self.image_layer.blockSignals(False)
        self.revalidate()

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
        """Predict the chosen layer in a worker thread; refused (with the reason shown) while a field is
        bad."""
        if self.running:
            return False
        errors = self.revalidate()
        if errors:
            first = next(iter(errors.values()))
            more = f" (and {len(errors) - 1} more, shown in red)" if len(errors) > 1 else ""
            self._show_error(f"Cannot start: {first}{more}")
            return False
        from napari.qt.threading import create_worker

        layer = self.selected_layer()
        config = self._config_for(layer)
        self._placement = {
            "name": layer.name,
            "scale": tuple(layer.scale),
            "translate": tuple(layer.translate),
            "instances": config.instances != "none",
        }
        self.stop_event = threading.Event()
        self.last_error = None
        self.last_outcome = None
        self.done_windows = 0
        logger = logging.getLogger("voxseg")
        logger.addHandler(self.log_relay)
        logger.setLevel(logging.INFO)
        self.worker = create_worker(
            _run_prediction,
            config,
            layer.name,
            layer_volume(layer),  # read in the worker (a dask array computes there)
            self.stop_event,
            self.progress_relay,
            _start_thread=False,
            _connect={"returned": self._on_returned, "finished": self._on_finished},
        )
        self.start_button.setText("Stop")
        self.status.setStyleSheet("")
        self.status.setText(f"Loading the model and predicting {layer.name!r}…")
        self.progress.setRange(0, 0)  # busy until the first windows are done
        self.progress.setFormat("%p%")
        self.append_log(f"--- predict {layer.name!r} with {config.source}")
        self.worker.start()
        return True

    def _config_for(self, layer: Any) -> PredictConfig:
        """The form's config; a blank voxel size is the layer's scale (napari's voxel size), which the
        watershed and the object volumes use, as the command line uses a file's ImageJ metadata."""
        config = PREDICT_FORM.config_from_values(self.values())
        scale = tuple(float(s) for s in layer.scale[-3:])
        if config.spacing is None and all(s > 0 for s in scale):
            config = dataclasses.replace(config, spacing=scale)
        return config

    def stop(self) -> None:
        """Stop after the batch of windows in progress; no layer is changed."""
        if not self.running:
            return
        self.stop_event.set()
        self.start_button.setText("Stopping…")
        self.start_button.setEnabled(False)
        self.status.setText("Stopping after the windows in progress…")

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop a running prediction and wait (bounded) for its worker to end."""
        if not self.running:
            return
        self.stop()
        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.05)

    def _on_progress(self, name: str, done: int, total: int) -> None:
        self.done_windows = done
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        if done < total:
            self.progress.setFormat(f"window {done}/{total}")
        else:
            self.progress.setFormat(f"{total} windows done")
            if not self.stop_event.is_set() and self._placement.get("instances"):
                self.status.setText("Labelling the instances…")

    def _on_returned(self, outcome: Outcome) -> None:
        self.last_outcome = outcome
        if outcome.error is not None:
            self._show_error(outcome.error)
            self.append_log(outcome.error)
        elif outcome.stopped:
            self.status.setText("Stopped: no layer was changed")
            self.append_log("stopped")
        elif outcome.prediction is not None:
            self._show_prediction(outcome.prediction)

    def _on_finished(self) -> None:
        logging.getLogger("voxseg").removeHandler(self.log_relay)
        self.worker = None
        self.start_button.setText("Start")
        self.start_button.setEnabled(True)
        if self.progress.maximum() == 0:  # ended before any window: leave the busy state
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def _show_prediction(self, prediction: Prediction) -> None:
        """Add (or replace) the output layers, placed like the image."""
        name = self._placement["name"]
        shown = {PROBABILITY: prediction.probability, MASK: prediction.mask}
        if prediction.labels is not None:
            shown[LABELS] = prediction.labels
        names = []
        if self.viewer is not None:
            for kind, data in shown.items():
                names.append(self._put_layer(f"{name} {kind}", kind, data))
            stale = self._own_layer(f"{name} {LABELS}", LABELS)
            if prediction.labels is None and stale is not None:  # would no longer match the mask
                self.viewer.layers.remove(stale)
        found = "" if prediction.objects is None else f", {prediction.objects} objects"
        self.status.setText(f"Done in {prediction.seconds:.1f} s{found}: " + ", ".join(map(repr, names)))

    def _own_layer(self, layer_name: str, kind: str) -> Any:
        """The layer this widget made under that name for that output, if it is still there."""
        assert self.viewer is not None
        if layer_name not in self.viewer.layers:
            return None
        layer = self.viewer.layers[layer_name]
        return layer if layer.metadata.get(OUTPUT_KEY) == kind else None

    def _put_layer(self, layer_name: str, kind: str, data: np.ndarray) -> str:
        """Replace the data of this widget's own layer of that name; otherwise add one (a layer the user
        made under the same name is left alone: napari numbers the new one). Returns the layer's name."""
        assert self.viewer is not None
        place = {"scale": self._placement["scale"], "translate": self._placement["translate"]}
        layer = self._own_layer(layer_name, kind)
        if layer is not None:
            layer.data = data
            layer.scale, layer.translate = place["scale"], place["translate"]
            if kind == PROBABILITY:
                layer.contrast_limits = PROBABILITY_STYLE["contrast_limits"]
            return layer.name
        metadata = {OUTPUT_KEY: kind}
        if kind == PROBABILITY:
            layer = self.viewer.add_image(
                data, name=layer_name, metadata=metadata, **place, **PROBABILITY_STYLE
            )
        else:
            opacity = 0.5 if kind == MASK else 0.7
            layer = self.viewer.add_labels(data, name=layer_name, metadata=metadata, opacity=opacity, **place)
        return layer.name

    def _show_error(self, text: str) -> None:
        self.last_error = text
        self.status.setStyleSheet(ERROR_STYLE)
        self.status.setText(text)

    def append_log(self, line: str) -> None:
        self.log_view.appendPlainText(line)
