"""Every command's options, declared once per command (`train`, `predict`, `evaluate`, `tune`,
`export`, `demo`, and `info` / `weights fetch` in `tools`), the options several commands share in
`shared`; the declaration machinery is `voxseg.options`. Nothing here imports torch."""

from __future__ import annotations

from voxseg.config.demo import DemoConfig
from voxseg.config.evaluate import EvaluateConfig
from voxseg.config.export import ExportConfig
from voxseg.config.predict import DEBRIS_FRACTION, INSTANCE_METHODS, PredictConfig
from voxseg.config.shared import DEVICE_CHOICES, PRECISIONS
from voxseg.config.tools import FetchConfig, InfoConfig
from voxseg.config.train import COMMAND_OPTIONS, FLAGS, RESUME_OVERRIDES, SCHEDULERS, TrainConfig
from voxseg.config.tune import TuneConfig
from voxseg.options import markdown_table

__all__ = [
    "COMMAND_OPTIONS",
    "DEBRIS_FRACTION",
    "DEVICE_CHOICES",
    "FLAGS",
    "INSTANCE_METHODS",
    "PRECISIONS",
    "RESUME_OVERRIDES",
    "SCHEDULERS",
    "DemoConfig",
    "EvaluateConfig",
    "ExportConfig",
    "FetchConfig",
    "InfoConfig",
    "PredictConfig",
    "TrainConfig",
    "TuneConfig",
    "readme_tables",
]


def readme_tables() -> dict[str, str]:
    """Command -> its README option table: the tables scripts/update_readme_options.py writes."""
    return {
        "train": markdown_table(TrainConfig, COMMAND_OPTIONS),
        "predict": markdown_table(PredictConfig, {}),
        "evaluate": markdown_table(EvaluateConfig, {}),
        "tune-threshold": markdown_table(TuneConfig, {}),
        "export": markdown_table(ExportConfig, {}),
        "info": markdown_table(InfoConfig, {}),
        "demo": markdown_table(DemoConfig, {}),
        "weights fetch": markdown_table(FetchConfig, {}),
    }
