"""`voxseg demo`'s options and the demo's own training settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import voxseg.config.shared as shared
from voxseg.config.train import TrainConfig
from voxseg.config.train_data import TrainData
from voxseg.options import DATA, TRAINING, Declared, declared_as

#: demo settings, a few minutes on 2 CPU cores; model, loss and learning rate are the defaults
DEMO_SETTINGS = dict(
    patch_size=(32, 64, 64),
    samples_per_image=8,
    batch_size=2,
    epochs=12,
    val_interval=2,
    train_fraction=0.75,
    seed=0,
)


@dataclass
class DemoConfig(Declared):
    """`voxseg demo`: the bundled nuclei, trained with `DEMO_SETTINGS`; only these may change."""

    results: Path = declared_as(
        TrainData,
        "results",
        Path("results"),
        help="where the demo's data (`demo_data/`) and its run folder are written",
    )
    epochs: int = declared_as(TrainConfig, "epochs", DEMO_SETTINGS["epochs"], help="epochs to train")
    device: str = shared.device(TRAINING)
    run_name: str | None = declared_as(TrainData, "run_name", None, section=DATA)
