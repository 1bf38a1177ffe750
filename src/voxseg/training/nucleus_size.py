"""The typical nucleus radius a run records in summary.json (`object_radius`): predict scales its
watershed's seed height and smoothing by it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from voxseg.config.predict import DEBRIS_FRACTION
from voxseg.data.objects import MEASURED_FILES, object_radius, typical_object_radius

if TYPE_CHECKING:
    from voxseg.config import TrainConfig
    from voxseg.data.discovery import Pair
    from voxseg.data.volumes import Volume


def labels_radius(config: TrainConfig, pairs: Sequence[Pair]) -> float | None:
    """Of the training labels' objects (µm; voxels without a voxel size). A fine-tune on reviewed
    planes keeps its parent's: a plane cuts each nucleus in one section, which measures small (a
    QCANet-like run's 7.66 µm read as 3.03 µm from three reviewed planes)."""
    if config.labels is None:
        return None
    if config.from_run is not None and config.reading().label_map.has_ignored:
        try:
            radius = json.loads((config.from_run / "summary.json").read_text()).get("object_radius")
        except (OSError, ValueError):
            radius = None
        if isinstance(radius, int | float):
            return float(radius)
    return typical_object_radius(pairs, config.reading())


def partition_radius(volumes: list[Volume]) -> float | None:
    """Of the objects in the partitions the volumes gave themselves (WNet3D, without labels)."""
    radii = [
        object_radius(v.label, v.label, v.voxel_size, instances=False, debris=DEBRIS_FRACTION)
        for v in volumes[:MEASURED_FILES]
    ]
    measured = [radius for radius in radii if radius is not None]
    return float(np.median(measured)) if measured else None
