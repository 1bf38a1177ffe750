"""`voxseg evaluate`'s options: predictions scored against labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import voxseg.config.shared as shared
from voxseg.config.train_data import TrainData
from voxseg.options import DATA, Declared, declared_as, option


@dataclass
class EvaluateConfig(Declared):
    """`voxseg evaluate`: predictions against labels."""

    pred: Path | None = option(
        None,
        help="folder of `voxseg predict` outputs (`<name>_labels.tif`, else `<name>_mask.tif`; or their "
        "`.zarr`/`.h5` twins)",
        section=DATA,
        label="Predictions",
        kind="folder",
        metavar="DIR",
        required=True,
    )
    labels: Path | None = option(
        None,
        help="folder of true labels, named like the images (TIFF, Zarr or HDF5; other names: `--label-name`)",
        section=DATA,
        label="Labels",
        kind="folder",
        metavar="DIR",
        required=True,
    )
    label_name: str | None = declared_as(
        TrainData,
        "label_name",
        None,
        help="how the true labels are named, `{name}` standing for the prediction's name (its image's): "
        "e.g. `mask_{name}`, `{name}_gt`, `{name}-seg` (without the extension: any format pairs)",
    )
    label_key: str | None = shared.label_key(DATA)
    strict: bool = option(
        False,
        help="refuse to score unless every ground truth has a prediction and every prediction a ground "
        "truth (otherwise the unpaired ones are skipped and listed)",
        section=DATA,
        label="Strict pairing",
        kind="bool",
    )
    json: Path | None = option(
        None,
        help="also write the scores as JSON",
        section=DATA,
        label="JSON file",
        kind="file",
        metavar="FILE",
        optional=True,
    )
    overwrite: bool = option(
        False, help="replace an existing JSON file", section=DATA, label="Overwrite", kind="bool"
    )
