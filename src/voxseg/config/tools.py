"""The options of the commands that read a run or the weights cache: `voxseg info`, `voxseg weights fetch`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import voxseg.config.shared as shared
from voxseg.config.predict import MODEL
from voxseg.errors import ConfigError
from voxseg.models.registry import PUBLISHED_MODELS, resolve_model_name
from voxseg.options import Declared, option


def _published(name: str) -> str:
    model = resolve_model_name(name)
    if model not in PUBLISHED_MODELS:
        raise ConfigError(
            f"MODEL: {model} has no published weights; choose one of {', '.join(PUBLISHED_MODELS)}"
        )
    return model


@dataclass
class InfoConfig(Declared):
    """`voxseg info`: a run folder."""

    run: Path | None = shared.run_folder(
        "a voxseg run folder: what produced it (its run card, run.json), readably",
        MODEL,
    )


@dataclass
class FetchConfig(Declared):
    """`voxseg weights fetch`: one model with published weights."""

    model: str | None = option(
        None,
        help="the model whose published napari-cellseg3d weights to download into the cache: "
        + ", ".join(f"`{name}`" for name in PUBLISHED_MODELS),
        section=MODEL,
        label="Model",
        kind="choice",
        metavar="MODEL",
        choices=PUBLISHED_MODELS,
        parse=_published,
        required=True,
        positional=True,
    )
