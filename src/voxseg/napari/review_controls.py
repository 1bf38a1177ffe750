"""The Predict widget's review loop: review the predicted mask, fine-tune on the reviewed planes, repeat.

After a prediction the mask layer is under review (`review.PlaneReview`, listed in a
`review_panel.ReviewPanel`). **Fine-tune** trains on the reviewed planes in the dock's worker
(`finetune.run_round`) and shows the new run's prediction, the reviewed planes keeping the user's
truth; the form's run becomes the new one, so rounds chain and the reviewed planes accumulate. **New
mask to review** starts from an empty mask when there is no model yet: a round then trains one from
scratch.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QPushButton

from voxseg.napari.finetune import FOREGROUND, RoundResult, run_round
from voxseg.napari.output_layers import put_layer
from voxseg.napari.prediction import MASK, PREDICTED, Prediction, layer_problem, layer_volume, placement
from voxseg.napari.review import PlaneReview
from voxseg.napari.review_panel import ReviewPanel

if TYPE_CHECKING:
    from napari.layers import Labels

    from voxseg.napari.predict_widget import PredictWidget

FINETUNE_HELP = (
    "train on the reviewed planes: the run above is fine-tuned (its child goes beside it), or, with no "
    "run, a new model is trained; then the image is predicted again and the run above becomes the new one"
)
NEW_MASK_HELP = (
    "an empty mask over the image layer, under review: paint nuclei on a few planes (and mark planes "
    "without any right), then Fine-tune; with no run above, a new model is trained from scratch"
)


class _RoundRelay(QObject):
    """A round's progress to the GUI thread: ("epoch", done, epochs) or ("predicting", windows...)."""

    progress = Signal(str, int, int)


class ReviewControls:
    """The review of the dock's mask layer, its panel, and the Fine-tune and New mask buttons."""

    def __init__(self, dock: PredictWidget, viewer: Any) -> None:
        self.dock = dock
        self.viewer = viewer
        self.review: PlaneReview | None = None
        self.image_name: str | None = None  # the image layer whose mask is under review
        #: TrainConfig options over a round's own (e.g. {"epochs": 3}); empty: the fine-tune's
        #: schedule, or voxseg's defaults from scratch
        self.round_options: dict[str, Any] = {}
        #: where a model trained from scratch goes; None: `results` in napari's working folder
        self.scratch_results: Path | None = None
        self.last_round: RoundResult | None = None
        self._round: dict[str, Any] = {}  # the round in progress: placement, planes, parent
        self.relay = _RoundRelay()
        self.relay.progress.connect(self._on_progress)
        self.panel = ReviewPanel()
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.setToolTip(FINETUNE_HELP)
        self.finetune_button.clicked.connect(self.finetune)
        self.panel.actions.addWidget(self.finetune_button)
        self.new_mask_button = QPushButton("New mask to review")
        self.new_mask_button.setToolTip(NEW_MASK_HELP)
        self.new_mask_button.clicked.connect(self.new_mask)
        if viewer is not None:
            viewer.layers.events.removed.connect(self._on_removed)

    # -- the review --------------------------------------------------------------------------------

    def follow(self, mask: Labels, image_name: str) -> None:
        """Review `mask`, the mask of image layer `image_name`: the review already on that image goes on
        (its truth written over the new data), another image's is closed and a new one starts."""
        review = self.review
        if (
            review is not None
            and self.image_name == image_name
            and review.layer.data.shape == mask.data.shape
        ):
            if review.layer is not mask:
                review.set_layer(mask)
            review.restore_truth()
            return
        self.close()
        if self.viewer is not None:  # on top and active: the user's paint goes to it, and shows
            layers = self.viewer.layers
            layers.move(layers.index(mask), len(layers))
            layers.selection.active = mask
        self.review, self.image_name = PlaneReview(self.viewer, mask), image_name
        self.review.changed.connect(self.update_buttons)
        self.panel.attach(self.review)
        if not self.review.bind_key():
            self.panel.status.setText("Shift-R is taken by another shortcut: use the button")
        self.update_buttons()

    def close(self) -> None:
        """End the review: its overlay and key go, the panel hides."""
        if self.review is not None:
            self.review.changed.disconnect(self.update_buttons)
            self.panel.detach()
            self.review.close()
        self.review = self.image_name = None
        self.update_buttons()

    def _on_removed(self, event: Any) -> None:
        if self.review is not None and event.value is self.review.layer:
            self.close()

    def new_mask(self) -> None:
        """An empty mask over the chosen image layer (named and owned like a predicted one, so a round
        replaces it), under a new review."""
        dock = self.dock
        layer = dock.chosen_layer(dock.image_layer)
        problem = layer_problem(layer)
        if problem is not None:
            dock.show_error(f"Cannot add a mask: {problem}")
            return
        self.close()
        place = {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}
        empty = np.zeros(np.shape(layer_volume(layer)), np.uint8)
        mask = put_layer(
            self.viewer, f"{layer.name} {MASK}", PREDICTED + MASK, empty, place, True, opacity=0.5
        )
        self.follow(mask, layer.name)
        dock.status.setStyleSheet("")
        dock.status.setText(f"Paint nuclei in {mask.name!r} on a few planes, then Fine-tune")

    def update_buttons(self, *_: Any) -> None:
        """Fine-tune while a plane is reviewed and nothing runs; New mask while nothing runs."""
        running = self.dock.running
        reviewed = self.review is not None and bool(self.review.planes)
        self.finetune_button.setEnabled(reviewed and not running)
        self.new_mask_button.setEnabled(not running)

    # -- a round -----------------------------------------------------------------------------------

    def finetune(self) -> bool:
        """Train on the reviewed planes in the dock's worker, then predict the image with the new run;
        False, with the reason shown, when it cannot start."""
        from napari.qt.threading import create_worker

        dock, review = self.dock, self.review
        if dock.running or review is None or not review.planes:
            return False
        source = str(dock.values()["source"]).strip()
        sparse = review.sparse_labels()
        problem = self._problem(source)
        if problem is None and not (sparse == FOREGROUND).any():
            problem = "no reviewed plane holds a nucleus: paint or mark one that does"
        if problem is not None:
            dock.show_error(f"Cannot fine-tune: {problem}")
            return False
        image = self.viewer.layers[self.image_name]
        config = dock.config_for(image)
        spacing = config.spacing  # the form's voxel size, else the layer's scale; napari's 1: unknown
        voxel = None if spacing is None or np.allclose(spacing, 1.0) else tuple(spacing)
        parent = Path(source).expanduser().absolute() if source else None
        results = self.scratch_results or Path("results").resolve()
        planes = len(review.planes)
        self._round = {"placed": placement(image, config), "planes": planes, "parent": parent}
        dock.stop_event, dock.last_error = threading.Event(), None
        worker = create_worker(
            run_round,
            layer_volume(image),
            sparse,
            image.name,
            voxel,
            parent,
            results,
            config,
            dock.stop_event,
            self.relay.progress.emit,
            dict(self.round_options),
            _start_thread=False,
            _connect={"returned": self._on_returned, "finished": self._on_finished},
        )
        doing = f"fine-tuning {parent.name}" if parent else f"training a new model into {results}"
        dock.progress.setRange(0, 0)  # busy while the data load
        dock.append_log(f"--- {doing} on {_planes(planes)} of {image.name!r}: {review.reviewed_summary()}")
        dock.start_worker(worker, f"Loading the reviewed planes and {doing}…")
        return True

    def _problem(self, source: str) -> str | None:
        """Why a round cannot start: a bad value in the form (the run may be blank: from scratch), the
        reviewed image gone, or a weights file (a fine-tune inherits a run's options)."""
        errors = self.dock.revalidate()
        errors.pop("image_layer", None)  # the round predicts the reviewed image, whichever is chosen
        if not source:
            errors.pop("source", None)
            errors.pop("model", None)
        if errors:
            return next(iter(errors.values()))
        if self.image_name not in self.viewer.layers:
            return f"image layer {self.image_name!r} is no longer open"
        problem = layer_problem(self.viewer.layers[self.image_name])
        if problem is None and source and not Path(source).expanduser().is_dir():
            problem = "a fine-tune starts from a run folder, not a weights file (blank: a new model)"
        return problem

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        bar = self.dock.progress
        bar.setRange(0, max(1, total))
        bar.setValue(done)
        if stage == "epoch":
            bar.setFormat(f"epoch {done}/{total}")
            if done == total and not self.dock.stop_event.is_set():
                self.dock.status.setText("Predicting the image with the new model…")
        else:
            bar.setFormat(f"predicting: window {done}/{total}")

    def _on_returned(self, result: RoundResult) -> None:
        self.last_round = result
        dock = self.dock
        if result.error is not None:
            dock.show_error(result.error)
            dock.append_log(result.error)
            return
        if result.segmentation is None or result.run_dir is None:
            kept = "" if result.run_dir is None else f"; run folder {result.run_dir}"
            dock.status.setText(f"Stopped: no layer was changed{kept}")
            dock.append_log(f"stopped{kept}")
            return
        run = result.run_dir
        dock.set_values({"source": str(run), "model": ""})  # the next prediction and round start from it
        dock.show_prediction(Prediction(result.segmentation, result.seconds), self._round["placed"])
        done = "Fine-tuned" if self._round["parent"] else "Trained a new model"
        where = "" if self._round["parent"] else f" in {run.parent}"
        text = f"{done} on {_planes(self._round['planes'])} in {result.seconds:.1f} s: run {run.name}{where}"
        dock.status.setText(text)
        dock.append_log(f"{text}; {result.validation}")

    def _on_finished(self) -> None:
        self.dock.run_finished()
        if self.dock.progress.maximum() == 0:  # ended before any epoch: leave the busy state
            self.dock.progress.setRange(0, 1)
            self.dock.progress.setValue(0)


def _planes(count: int) -> str:
    return f"{count} plane{'' if count == 1 else 's'}"
