"""The Predict dock widget: an image layer in; probability, mask and instance labels layers out.

The form is generated from PredictConfig (same labels, help, defaults and checks as `voxseg predict`).
At Start the layer is predicted in memory by `voxseg.Predictor` (the command line's own core) in a
napari worker thread; its results become layers placed like the image (same scale and translate),
and a new run replaces them. The mask is then under review, and a round of fine-tuning on the reviewed
planes predicts it again (`review_controls`).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QFormLayout, QGroupBox, QLabel, QVBoxLayout

from voxseg.config import PredictConfig
from voxseg.errors import ConfigError, Stopped, VoxsegError
from voxseg.napari.dock import LayerCombo, RunDock, fill_combo
from voxseg.napari.form import ConfigForm
from voxseg.napari.output_layers import PROBABILITY_STYLE, is_output, own_layer, put_layer
from voxseg.napari.prediction import (
    DISTANCE,
    LABELS,
    MASK,
    PREDICTED,
    PROBABILITY,
    Prediction,
    layer_problem,
    layer_volume,
    placement,
    predict_volume,
)
from voxseg.napari.review_controls import ReviewControls

#: the distance output, hidden at first: a look at the centres the instances grew from
DISTANCE_STYLE = {**PROBABILITY_STYLE, "colormap": "cyan", "visible": False}

if TYPE_CHECKING:
    import napari

#: options about files on disk: the widget reads a layer and makes layers instead
FILE_OPTIONS = (
    "input",
    "image_key",
    "level",
    "channel",
    "output",
    "output_format",
    "save_probabilities",
    "overwrite",
    "resume",
)
PREDICT_FORM = ConfigForm(PredictConfig, exclude=FILE_OPTIONS)


@dataclass(frozen=True)
class Outcome:
    """What the worker hands back: a prediction, or why there is none. The worker never raises."""

    prediction: Prediction | None = None
    error: str | None = None
    stopped: bool = False


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
    from voxseg.inference.model import trained

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


class _ProgressRelay(QObject):
    """The predictor's progress (windows done, windows in all) to the GUI thread."""

    progress = Signal(int, int)


def _run_prediction(
    config: PredictConfig, volume: Any, stop: threading.Event, relay: _ProgressRelay
) -> Outcome:
    """The worker's function. Every failure becomes an Outcome (superqt's workers may swallow some)."""
    try:
        return Outcome(prediction=predict_volume(config, volume, relay.progress.emit, stop))
    except Stopped:
        return Outcome(stopped=True)
    except VoxsegError as exc:
        return Outcome(error=f"error: {exc}")
    except Exception as exc:
        return Outcome(error=f"prediction failed: {type(exc).__name__}: {exc}")


class PredictWidget(RunDock):
    """Image layer, then Model / Prediction / Instances sections, then Start/Stop, progress and the log."""

    stopping_text = "Stopping after the windows in progress…"

    def __init__(
        self, napari_viewer: napari.viewer.Viewer | napari.components.ViewerModel | None = None
    ) -> None:
        self.last_outcome: Outcome | None = None
        self.done_windows = 0
        self._placement: dict[str, Any] = {}
        self.progress_relay = _ProgressRelay()
        self.review_controls = ReviewControls(self, napari_viewer)
        super().__init__(napari_viewer, PREDICT_FORM)
        self.progress_relay.progress.connect(self._on_progress)
        self.review_controls.update_buttons()

    def build(self, column: QVBoxLayout) -> None:
        box = QGroupBox("Image")
        rows = QFormLayout(box)
        self.image_layer = LayerCombo(self.refresh_layer_choices)
        self.image_layer.setToolTip("the 3D image layer to segment; the results are added as layers")
        self.image_layer.currentTextChanged.connect(self.revalidate)
        rows.addRow("Image layer", self.with_error("image_layer", self.image_layer))
        rows.addRow("", self.review_controls.new_mask_button)
        column.addWidget(box)
        for section in self.form.sections:
            box, rows = self.section_box(section)
            if "source" in (f.name for f in self.form.fields if f.section == section):
                self.source_info = QLabel()  # what the chosen run or weights file holds
                self.source_info.setWordWrap(True)
                self.source_info.hide()
                rows.addRow("", self.source_info)
            column.addWidget(box)
        self.add_run_controls(column)
        column.addWidget(self.review_controls.panel)

    def problems(self, values: dict[str, Any]) -> dict[str, str]:
        errors, _ = PREDICT_FORM.check(values, fallback="source")
        about = ""
        if "source" not in errors and "model" not in errors:
            problems, about = inspect_source(values)
            errors.update(problems)
        self.source_info.setText(about)
        self.source_info.setVisible(bool(about))
        problem = layer_problem(self.chosen_layer(self.image_layer))
        if problem is not None:
            errors["image_layer"] = problem
        return errors

    def refresh_layer_choices(self, *_: Any) -> None:
        """Image layers, without the probability layers this widget made."""
        if self.viewer is None:
            return
        from napari.layers import Image

        layers = self.viewer.layers
        fill_combo(
            self.image_layer,
            (x.name for x in layers if isinstance(x, Image) and not is_output(x)),
        )
        self.revalidate()

    # -- running -------------------------------------------------------------------------------

    def launch(self) -> bool:
        """Predict the chosen layer in a worker thread."""
        from napari.qt.threading import create_worker

        layer = self.chosen_layer(self.image_layer)
        config = self.config_for(layer)
        self._placement = placement(layer, config)
        self.last_outcome = None
        self.done_windows = 0
        worker = create_worker(
            _run_prediction,
            config,
            layer_volume(layer),  # read in the worker (a dask array computes there)
            self.stop_event,
            self.progress_relay,
            _start_thread=False,
            _connect={"returned": self._on_returned, "finished": self._on_finished},
        )
        self.progress.setRange(0, 0)  # busy until the first windows are done
        self.progress.setFormat("%p%")
        self.append_log(f"--- predict {layer.name!r} with {config.source}")
        self.start_worker(worker, f"Loading the model and predicting {layer.name!r}…")
        return True

    def config_for(self, layer: Any) -> PredictConfig:
        """The form's config; a blank voxel size is the layer's scale (napari's voxel size), which the
        watershed and the object volumes use, as the command line uses a file's ImageJ metadata."""
        config = PREDICT_FORM.config_from_values(self.values())
        scale = tuple(float(s) for s in layer.scale[-3:])
        if config.spacing is None and all(s > 0 for s in scale):
            config = dataclasses.replace(config, spacing=scale)
        return config

    def _on_progress(self, done: int, total: int) -> None:
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
            self.show_error(outcome.error)
            self.append_log(outcome.error)
        elif outcome.stopped:
            self.status.setText("Stopped: no layer was changed")
            self.append_log("stopped")
        elif outcome.prediction is not None:
            self.show_prediction(outcome.prediction, self._placement)

    def _on_finished(self) -> None:
        self.run_finished()
        if self.progress.maximum() == 0:  # ended before any window: leave the busy state
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def start_worker(self, worker: Any, status: str) -> None:
        super().start_worker(worker, status)
        self.review_controls.update_buttons()

    def run_finished(self) -> None:
        super().run_finished()
        self.review_controls.update_buttons()

    def show_prediction(self, prediction: Prediction, placed: dict[str, Any]) -> None:
        """Add (or replace) the output layers, placed like the image (`placement`); the mask is then
        under review, its reviewed planes showing the user's truth."""
        name, result = placed["name"], prediction.segmentation
        place = {"scale": placed["scale"], "translate": placed["translate"]}
        outputs = [
            (PROBABILITY, result.probability, PROBABILITY_STYLE),
            (MASK, result.mask, {"opacity": 0.5}),
        ]
        if result.labels is not None:
            outputs.append((LABELS, result.labels, {"opacity": 0.7}))
        if result.distance is not None:  # each nucleus's distance to its boundary: its peaks seed objects
            outputs.append((DISTANCE, result.distance, DISTANCE_STYLE))
        made = {}
        if self.viewer is not None:
            for kind, data, style in outputs:
                labels = kind not in (PROBABILITY, DISTANCE)
                made[kind] = put_layer(
                    self.viewer, f"{name} {kind}", PREDICTED + kind, data, place, labels, **style
                )
            for kind, data in ((LABELS, result.labels), (DISTANCE, result.distance)):
                stale = own_layer(self.viewer, f"{name} {kind}", PREDICTED + kind)
                if data is None and stale is not None:  # would no longer match the mask
                    self.viewer.layers.remove(stale)
            self.review_controls.follow(made[MASK], name)
        names = [layer.name for layer in made.values()]
        found = "" if result.labels is None else f", {int(result.labels.max())} objects"
        self.status.setText(f"Done in {prediction.seconds:.1f} s{found}: " + ", ".join(map(repr, names)))
