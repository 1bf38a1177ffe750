"""voxseg: train and apply 3D cell-segmentation networks on microscopy volumes.

Python API::

    import voxseg
    config = voxseg.TrainConfig(images="data/images", labels="data/labels", epochs=20)
    result = voxseg.train(config)
    print(result.status, result.best_val_dice, result.run_dir)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voxseg.config import TrainConfig
from voxseg.errors import ConfigError, DataError, VoxsegError
from voxseg.version import __version__

if TYPE_CHECKING:
    from voxseg.training.session import TrainingSession, TrainResult, train

__all__ = [
    "ConfigError",
    "DataError",
    "TrainConfig",
    "TrainResult",
    "TrainingSession",
    "VoxsegError",
    "__version__",
    "train",
]

_TRAINING = ("TrainingSession", "TrainResult", "train")


def __getattr__(name: str) -> Any:
    """Import the training engine (and MONAI's transforms) only when it is used: a fast CLI start."""
    if name in _TRAINING:
        from voxseg.training import session

        return getattr(session, name)
    raise AttributeError(f"module 'voxseg' has no attribute {name!r}")
