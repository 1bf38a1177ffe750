"""`voxseg evaluate`'s options: predictions scored against labels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import voxseg.config.shared as shared
from voxseg.options import DATA, Declared, option


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
        help="folder of true labels, named like the images (TIFF, Zarr or HDF5)",
        section=DATA,
        label="Labels",
        kind="folder",
        metavar="DIR",
        required=True,
    )
    label_key: str | None = shared.label_key(DATA)
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
