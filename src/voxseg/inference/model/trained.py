"""A trained model to predict with: from a voxseg run folder, or from a weights file and a model name."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from voxseg.config import PredictConfig, TrainConfig
from voxseg.errors import ConfigError, DataError, VoxsegError, shorten_list
from voxseg.models.registry import OUTPUT_NAMES, get_model_spec, output_channels
from voxseg.models.weights import load_trained_network
from voxseg.options import parse_size

log = logging.getLogger("voxseg")

SOURCE = "RUN_DIR_OR_WEIGHTS"
#: window for a bare weights file, when none is given (training's default patch)
DEFAULT_WINDOW = (64, 64, 64)
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class TrainedModel:
    """The network with its weights loaded, and how it should be applied."""

    name: str
    model: nn.Module
    window: tuple[int, int, int]
    threshold: float
    threshold_from: str  # where the threshold comes from, for the log
    weights: Path
    isotropic: float | None = None  # the cube side (µm) the run trained on (--resample isotropic)
    object_radius: float | None = None  # of its training labels' objects, in the run's voxel units
    voxel_size: tuple[float, float, float] | None = None  # the run's (µm); None: unknown
    outputs: tuple[str, ...] = ("foreground",)  # the network's, in channel order (training.outputs)


def load_trained_model(config: PredictConfig) -> TrainedModel:
    """Read the run folder or weights file named by `config.source`; bad input raises VoxsegError."""
    assert config.source is not None, "resolved configs always name a source"
    name, weights, window, run = check_source(config.source, config.model)
    spec = get_model_spec(name)
    window = spec.valid_size(config.window or window)
    model, described = load_trained_network(name, weights, SOURCE)
    model.eval()
    chosen = choose_foreground_class(model, name, config.foreground_class)
    if config.threshold is not None:
        threshold, origin = config.threshold, "--threshold"
    elif chosen:
        threshold, origin = DEFAULT_THRESHOLD, "default: the run's threshold is its own foreground class's"
    else:
        threshold, reason = run_threshold(run)
        origin = f"the run's: {reason}" if run.get("threshold") is not None else "default"
    log.info("model %s: %s; window %s", name, described, "×".join(map(str, window)))
    voxel_size = tuple(run["voxel_size_um"]) if run.get("voxel_size_um") else None
    radius = run.get("object_radius")
    outputs = OUTPUT_NAMES[: output_channels(name, model.state_dict())]
    return TrainedModel(
        name, model, window, threshold, origin, weights, isotropic_side(run), radius, voxel_size, outputs
    )


def choose_foreground_class(model: nn.Module, name: str, chosen: int | None) -> bool:
    """Point a WNet3D network's output at class `chosen` (`--foreground-class`); whether that changed
    the class its weights name. Other networks have one output and refuse the option."""
    if chosen is None:
        return False
    trained = getattr(model, "foreground", None)
    if trained is None:
        raise ConfigError(
            f"--foreground-class: a {name} network gives one foreground probability; only a WNet3D "
            "run has classes to choose from"
        )
    if chosen >= model.classes:
        raise ConfigError(
            f"--foreground-class: {chosen} is not a class of this WNet3D run, which has {model.classes} "
            f"(0 to {model.classes - 1}; it trained {int(trained)} as the nucleus)"
        )
    log.info("foreground: class %d (--foreground-class; the run's is %d)", chosen, int(trained))
    changed = chosen != int(trained)
    trained.fill_(chosen)
    return changed


def run_outputs(config: PredictConfig) -> tuple[str, ...]:
    """The outputs of the network `config.source` names, before it loads: its run's summary says, or
    (an older run, a weights file) the weights' shapes."""
    from voxseg.models.weights import adapt_state_dict, read_state_dict

    name, weights, _, run = check_source(config.source, config.model)  # type: ignore[arg-type]
    if run.get("outputs"):
        return tuple(run["outputs"])
    return OUTPUT_NAMES[: output_channels(name, adapt_state_dict(name, read_state_dict(weights, SOURCE)))]


def run_threshold(summary: dict) -> tuple[float, str]:
    """The threshold a run's summary gives predictions, and why: its tuned one, else the default."""
    if summary.get("threshold") is None:
        return DEFAULT_THRESHOLD, "default: the run never validated"
    return float(summary["threshold"]), summary.get("threshold_reason") or "tuned on its validation volumes"


def isotropic_side(run: dict) -> float | None:
    """The voxel side a run resampled its volumes to (`--resample isotropic`), from its summary."""
    if run.get("resample") != "isotropic" or not run.get("voxel_size_um"):
        return None
    return float(run["voxel_size_um"][0])


def check_source(source: Path, model: str | None) -> tuple[str, Path, tuple[int, int, int], dict]:
    """What a run folder or weights file will give, checked without reading the weights: (model name,
    weights file, default window, the run's summary). Bad input raises VoxsegError. A weights file of
    the named network inside a run folder (`RUN/best.pth --model M`) predicts as the run does: with its
    window, threshold and nucleus size."""
    if source.is_dir():
        return _from_run_folder(source, model)
    if not source.is_file():
        raise DataError(f"{SOURCE}: {source} does not exist")
    if model is None:
        raise ConfigError(f"--model: {source} is a weights file; say which network it is: {_which(source)}")
    if (source.parent / "config.yaml").is_file():  # a run's own weights: its window, threshold, nuclei
        try:
            name, _, window, run = _from_run_folder(source.parent, None)
        except VoxsegError:  # not a readable run after all: the file alone
            return model, source, DEFAULT_WINDOW, {}
        if name == get_model_spec(model).name:  # the threshold's origin in the log says "the run's"
            return model, source, window, run
    return model, source, DEFAULT_WINDOW, {}


def _which(weights: Path) -> str:
    """The --model that fits a weights file, else the names to choose from."""
    from voxseg.models.registry import MODEL_NAMES
    from voxseg.models.weights import models_fitting, read_state_dict

    try:
        fits = models_fitting(read_state_dict(weights, SOURCE))
    except DataError:
        fits = []
    if fits:
        return f"--model {fits[0]} (the file fits {' and '.join(fits)})"
    return f"--model NAME, one of {', '.join(MODEL_NAMES)}"


def _from_run_folder(run_dir: Path, asked_model: str | None) -> tuple[str, Path, tuple[int, int, int], dict]:
    """Model name, weights (best.pth, else last.pth), window and summary of a voxseg run folder."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        runs = sorted(
            (folder for folder in run_dir.iterdir() if (folder / "config.yaml").is_file()),
            key=lambda folder: folder.stat().st_mtime,
        )
        if runs:
            raise DataError(
                f"{SOURCE}: {run_dir} is a results folder, not a run; give one of its runs: "
                f"{shorten_list([folder.name for folder in reversed(runs)], 5)} (newest first), "
                f"e.g. {runs[-1]}"
            )
        raise DataError(
            f"{SOURCE}: {run_dir} is not a voxseg run folder (no config.yaml); give a run folder "
            "(it holds config.yaml and best.pth), or a weights file with --model"
        )
    train = TrainConfig.from_yaml(saved)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    name = get_model_spec(str(train.model)).name
    if asked_model is not None and asked_model != name:
        raise ConfigError(f"--model: {run_dir} trained {name}, not {asked_model}")
    weights = next((run_dir / f for f in ("best.pth", "last.pth") if (run_dir / f).is_file()), None)
    if weights is None:
        raise DataError(f"{SOURCE}: {run_dir} holds no best.pth or last.pth")
    window = summary.get("patch_size") or train.patch_size
    return name, weights, parse_size(window, "--window"), summary
