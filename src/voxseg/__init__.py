"""voxseg: train and apply 3D cell-segmentation networks on microscopy volumes.

Python API::

    import voxseg
    config = voxseg.TrainConfig(images="data/images", labels="data/labels", epochs=20)
    result = voxseg.train(config)
    print(result.status, result.best_val_dice, result.run_dir)

    predictor = voxseg.Predictor(result.run_dir, instances="watershed")  # loads the model once
    labels = predictor(volume).labels  # numpy in, numpy out, nothing written
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voxseg.config import PredictConfig, TrainConfig
from voxseg.errors import ConfigError, DataError, VoxsegError
from voxseg.version import __version__

if TYPE_CHECKING:
    from voxseg.api import TrainResult, predict, train
    from voxseg.inference.model.predictor import Predictor, Segmentation
    from voxseg.training.session import TrainingSession

__all__ = [
    "ConfigError",
    "DataError",
    "PredictConfig",
    "Predictor",
    "Segmentation",
    "TrainConfig",
    "TrainResult",
    "TrainingSession",
    "VoxsegError",
    "__version__",
    "predict",
    "train",
]

#: public name -> the module that holds it, imported on first use (torch and MONAI take seconds)
_LAZY = {
    "TrainResult": "voxseg.api",
    "train": "voxseg.api",
    "predict": "voxseg.api",
    "TrainingSession": "voxseg.training.session",
    "Predictor": "voxseg.inference.model.predictor",
    "Segmentation": "voxseg.inference.model.predictor",
}


def __getattr__(name: str) -> Any:
    """Import the training engine only when it is used: `import voxseg` stays instant."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'voxseg' has no attribute {name!r}")
