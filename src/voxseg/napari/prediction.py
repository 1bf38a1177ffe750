"""Predicting an image layer in memory: its checks, where its outputs go, and what they are named.

Shared by the Predict widget and a fine-tune round (`finetune`, which re-predicts with the model it
made) and the review controls; no Qt here, so a worker thread can run it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from voxseg.napari.layer_data import not_a_volume

if TYPE_CHECKING:
    from voxseg.config import PredictConfig
    from voxseg.inference.model.predictor import Segmentation

PROBABILITY, MASK, LABELS, DISTANCE = "probability", "mask", "labels", "distance"
#: the owner of the Predict widget's layers (see `output_layers`), followed by the output's kind
PREDICTED = "prediction "


@dataclass(frozen=True)
class Prediction:
    """The Predictor's segmentation of the layer, and the seconds it took (the model's loading included)."""

    segmentation: Segmentation
    seconds: float


def layer_volume(layer: Any) -> Any:
    """The layer's data as predicted: its full-resolution level when it is multiscale."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def layer_problem(layer: Any) -> str | None:
    """Why an image layer cannot be predicted (None when it can)."""
    if layer is None:
        return "choose the image layer to segment"
    shape = tuple(np.shape(layer_volume(layer)))
    if getattr(layer, "rgb", False) or len(shape) != 3:
        return not_a_volume(layer.name, shape, getattr(layer, "rgb", False))
    return None


def placement(layer: Any, config: PredictConfig) -> dict[str, Any]:
    """Where the outputs of predicting `layer` go: its name, scale and translate, and whether instances
    are labelled."""
    return {
        "name": layer.name,
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
        "instances": config.instances != "none",
    }


def predict_volume(
    config: PredictConfig,
    volume: Any,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> Prediction:
    """Predict a Z×Y×X array (numpy, dask…) in memory with `voxseg.Predictor`, `voxseg predict`'s
    own core: the same window, normalisation, threshold and instances, and no file written."""
    from voxseg.inference.model.predictor import Predictor

    started = time.perf_counter()
    predictor = Predictor.of(config.resolved(optional=("input", "output")))
    segmentation = predictor(volume, config.spacing, progress, stop)
    return Prediction(segmentation, time.perf_counter() - started)
