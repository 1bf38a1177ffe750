"""voxseg: train and apply 3D cell-segmentation networks on microscopy volumes.

Python API::

    import voxseg
    config = voxseg.TrainConfig(images="data/images", labels="data/labels", epochs=20)
    result = voxseg.train(config)
    print(result.status, result.best_val_dice, result.run_dir)
"""

from voxseg.config import TrainConfig
from voxseg.errors import ConfigError, DataError, VoxsegError
from voxseg.training.session import TrainingSession, TrainResult, train

__version__ = "0.1.0"

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
