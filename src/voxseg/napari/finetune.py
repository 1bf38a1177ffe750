"""One round of corrections: train on the planes reviewed in napari, then predict the image again.

The round is a plain function a worker thread runs: the image and its sparse labels (see
`review.PlaneReview.sparse_labels`) are written as a small dataset, trained on as `voxseg train --from
RUN` would (or from scratch when there is no model yet), and the image is predicted with the new run
and the Predict form's options. The run folder keeps a copy of what it learned from (`keep_inputs`),
so the staging folder is removed afterwards. No Qt here.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from voxseg.config import PredictConfig, TrainConfig
from voxseg.errors import Stopped, VoxsegError
from voxseg.napari.layer_data import write_layer_dataset
from voxseg.napari.prediction import predict_volume

if TYPE_CHECKING:
    from voxseg.api import TrainResult
    from voxseg.inference.model.predictor import Segmentation
    from voxseg.training.events import Event

#: the review's sparse labels: 0 not reviewed, then the class of a reviewed voxel; and how training reads them
BACKGROUND, FOREGROUND = 1, 2
SPARSE = f"0:ignore,{BACKGROUND}:background,{FOREGROUND}:foreground"
#: what the Dice of a round is measured on: a fine-tune's reviewed planes validate too (there are
#: too few to hold some out); a first model's are held out in blocks of the volume
VALIDATED_ON = {
    True: "the reviewed planes it trained on (optimistic)",
    False: "reviewed voxels of blocks of the volume held out of training",
}
_ROUND = re.compile(r"^(?P<base>.+)-ft(?P<n>\d+)$")

#: `progress(stage, done, total)`: stage "epoch" (epochs done of all) or "predicting" (windows)
Progress = Callable[[str, int, int], None]
Status = Literal["completed", "stopped", "failed"]


@dataclass(frozen=True)
class RoundResult:
    """What a round hands back; it never raises: a failure is `error`, with the CLI's wording.

    `status`: "completed" (trained and predicted), "stopped" (by the stop event: nothing to show,
    though a run stopped while training keeps its folder) or "failed". `best_val_dice` is the new
    run's summary.json figure, measured on `VALIDATED_ON` (the reviewed planes are the only truth there
    is, so no before/after Dice on them is honest).
    """

    status: Status
    run_dir: Path | None = None
    segmentation: Segmentation | None = None
    seconds: float = 0.0
    error: str | None = None
    best_val_dice: float | None = None
    fine_tune: bool = True  # from a parent run (else a first model, from scratch)

    @property
    def validation(self) -> str:
        """`validation Dice 0.912 on ...`, or why there is none."""
        if self.best_val_dice is None:
            return "no validation Dice"
        return f"validation Dice {self.best_val_dice:.3f} on {VALIDATED_ON[self.fine_tune]}"


def child_name(parent: Path) -> str:
    """The first free `<parent>-ftN` beside the parent; a parent `x-ft2` numbers on: `x-ft3`."""
    match = _ROUND.match(parent.name)
    base, n = (match["base"], int(match["n"]) + 1) if match else (parent.name, 1)
    while (parent.parent / f"{base}-ft{n}").exists():
        n += 1
    return f"{base}-ft{n}"


def round_config(
    images: Path,
    labels: Path,
    voxel_size: tuple[float, float, float] | None,
    parent: Path | None,
    results: Path,
    predict_config: PredictConfig,
    options: Mapping[str, Any],
) -> TrainConfig:
    """The round's training options: the parent's network and the fine-tune schedule (`auto`), or
    voxseg's defaults from scratch; the device and threads of the Predict form; then `options`."""
    values: dict[str, Any] = {
        "images": images,
        "labels": labels,
        "label_map": SPARSE,
        "from_run": parent,
        "keep_inputs": True,
        "results": parent.parent if parent is not None else results,
        "run_name": None if parent is None else child_name(parent),
        "spacing": voxel_size,
        "device": predict_config.device,
        "threads": predict_config.threads,
    }
    return TrainConfig(**{**values, **options})


def run_round(
    image: Any,
    sparse: np.ndarray,
    name: str,
    voxel_size: tuple[float, float, float] | None,
    parent: Path | None,
    results: Path,
    predict_config: PredictConfig,
    stop: threading.Event,
    progress: Progress,
    options: Mapping[str, Any] | None = None,
) -> RoundResult:
    """Train on the reviewed planes of `image` (layer `name`), then predict it with the new run.

    `parent` is the run to fine-tune (its child goes beside it) or None to train from scratch into
    `results`; `options` are TrainConfig options over the round's (e.g. a shorter schedule).
    """
    from voxseg.api import train
    from voxseg.training.events import EpochEnd, RunStarted

    def report(event: Event) -> None:
        if isinstance(event, RunStarted):
            progress("epoch", event.start_epoch - 1, event.epochs)
        elif isinstance(event, EpochEnd):
            progress("epoch", event.epoch, event.epochs)

    def windows(done: int, total: int) -> None:
        progress("predicting", done, total)

    started = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix="voxseg-round-"))
    trained: TrainResult | None = None

    def ended(
        status: Status, error: str | None = None, segmentation: Segmentation | None = None
    ) -> RoundResult:
        return RoundResult(
            status=status,
            run_dir=None if trained is None else trained.run_dir,
            segmentation=segmentation,
            seconds=time.perf_counter() - started,
            error=error,
            best_val_dice=None if trained is None else trained.best_val_dice,
            fine_tune=parent is not None,
        )

    try:
        volume = np.asarray(image)  # a dask layer computes here, once for training and prediction
        scale = voxel_size or (1.0, 1.0, 1.0)
        images, labels = write_layer_dataset(staging, name, volume, name, sparse, scale)
        assert labels is not None
        config = round_config(images, labels, voxel_size, parent, results, predict_config, options or {})
        trained = train(config, listeners=[report], stop_event=stop, progress=False)
        if trained.status == "stopped":
            return ended("stopped")
        again = dataclasses.replace(predict_config, source=trained.run_dir, model=None)
        return ended("completed", segmentation=predict_volume(again, volume, windows, stop).segmentation)
    except (Stopped, KeyboardInterrupt):  # KeyboardInterrupt: stopped while the data were loading
        return ended("stopped")
    except VoxsegError as exc:
        return ended("failed", f"error: {exc}")
    except Exception as exc:
        return ended("failed", f"fine-tune failed: {type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
