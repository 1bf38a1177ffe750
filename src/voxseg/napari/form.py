"""What the Train widget shows, and how its values become a TrainConfig. No Qt here: tested plainly.

Every field is a TrainConfig field (same name, same default, same validation), so the GUI cannot
drift from the CLI: checking a field means building a config with that value and validating it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxseg.config import DEVICE_CHOICES, PRECISIONS, SCHEDULERS, TrainConfig, option_name, parse_size
from voxseg.data.discovery import pair_files
from voxseg.errors import ConfigError, VoxsegError
from voxseg.losses import LOSSES
from voxseg.models.registry import MODELS, get_model_spec

DATA, AUGMENTATION, TRAINING = "Data", "Augmentation", "Training"
SECTIONS = (DATA, AUGMENTATION, TRAINING)

#: stands in for the data folders when only one field is checked, or when layers are the data
_PLACEHOLDER_DATA = {"images": ".", "labels": "."}


@dataclass(frozen=True)
class Field:
    """One input of the widget. `kind`: folder, file, text, int, float, bool or choice."""

    name: str
    label: str
    section: str
    kind: str
    help: str = ""
    choices: tuple[str, ...] = ()
    optional: bool = False  # may be left blank (None in the config)


FIELDS: tuple[Field, ...] = (
    Field("images", "Images folder", DATA, "folder", "folder of 3D .tif/.tiff images"),
    Field("labels", "Labels folder", DATA, "folder", "label .tif/.tiff named like the images"),
    Field("val_images", "Validation images", DATA, "folder", "optional, instead of a split", optional=True),
    Field("val_labels", "Validation labels", DATA, "folder", "with validation images", optional=True),
    Field("results", "Results folder", DATA, "folder", "receives one run folder per training"),
    Field("run_name", "Run name", DATA, "text", "blank: <model>_<date-time>", optional=True),
    Field("train_fraction", "Training fraction", DATA, "float", "share of volumes used for training"),
    Field("zip", "Zip results", DATA, "bool", "also write <run name>.zip"),
    Field("pretrained", "Pre-trained weights", DATA, "bool", "napari-cellseg3d's published weights"),
    Field("weights", "Custom weights", DATA, "file", "start from a weights file", optional=True),
    Field("whole_volumes", "Whole volumes", AUGMENTATION, "bool", "train on whole volumes, not patches"),
    Field("patch_size", "Patch size", AUGMENTATION, "text", "N, Z,Y,X, or auto (largest that fits memory)"),
    Field("samples_per_image", "Samples per image", AUGMENTATION, "int", "patches per volume per epoch"),
    Field("foreground_share", "Foreground share", AUGMENTATION, "float", "patches centred on foreground"),
    Field("pad_pow2", "Pad to powers of two", AUGMENTATION, "bool", "as napari-cellseg3d did"),
    Field("augment", "Augmentation", AUGMENTATION, "bool", "flips, rotations, elastic, intensity, noise"),
    Field("model", "Model", TRAINING, "choice", choices=tuple(MODELS)),
    Field("loss", "Loss", TRAINING, "choice", choices=tuple(LOSSES)),
    Field("lr", "Learning rate", TRAINING, "float", "Adam learning rate"),
    Field("batch_size", "Batch size", TRAINING, "text", "N, or auto: the largest that fits memory"),
    Field("epochs", "Epochs", TRAINING, "int"),
    Field("val_interval", "Validation interval", TRAINING, "int", "validate every N epochs"),
    Field("device", "Device", TRAINING, "choice", "auto: CUDA, then MPS, then CPU", DEVICE_CHOICES),
    Field("seed", "Seed", TRAINING, "int"),
    Field("scheduler", "LR schedule", TRAINING, "choice", choices=SCHEDULERS),
    Field("warmup_epochs", "Warm-up epochs", TRAINING, "int", "linear learning-rate warm-up"),
    Field("early_stop_patience", "Early stop after", TRAINING, "int", "validations without gain; 0 = never"),
    Field("workers", "Data workers", TRAINING, "text", "blank: chosen from cores and device", optional=True),
    Field("precision", "Precision", TRAINING, "choice", "auto: bf16 where native, else fp32", PRECISIONS),
    Field("compile", "torch.compile (CUDA)", TRAINING, "bool", "compile the model on CUDA GPUs"),
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}
assert set(FIELDS_BY_NAME) <= {f.name for f in dataclasses.fields(TrainConfig)}


def default_values() -> dict[str, Any]:
    """The config's own defaults, as the widget displays them."""
    return display_values(TrainConfig())


def display_values(config: TrainConfig) -> dict[str, Any]:
    """A config's values in widget form (paths and sizes as text, None as blank)."""
    values: dict[str, Any] = {}
    for f in FIELDS:
        value = getattr(config, f.name)
        if value is None:
            value = ""
        elif f.name == "patch_size":
            value = _size_text(value)
        elif isinstance(value, Path) or f.kind in ("folder", "file", "text"):
            value = str(value)
        elif f.kind == "float" and isinstance(value, float):
            value = f"{value:.6g}"
        values[f.name] = value
    return values


def _size_text(value: Any) -> str:
    """(64, 64, 64) -> "64"; (32, 64, 64) -> "32,64,64"; anything unparsable is shown as given."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        sides = parse_size(value, "--patch-size")
    except ConfigError:
        return str(value)
    return str(sides[0]) if len(set(sides)) == 1 else ",".join(map(str, sides))


def config_from_values(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from widget values (blank optional fields become None). Not yet validated."""
    return TrainConfig.from_dict(
        {name: _typed(FIELDS_BY_NAME[name], value) for name, value in values.items()}
    )


def _typed(field: Field, value: Any) -> Any:
    """Text that parses becomes its number or size (so saved YAML holds numbers); the rest stays
    text, for `validate()` to name."""
    if not isinstance(value, str):
        return value
    value = value.strip()
    if value == "" and field.optional:
        return None
    try:
        if field.kind == "float":
            return float(value)
        if field.name in ("workers", "batch_size"):
            return int(value)
        if field.name == "patch_size":
            return list(parse_size(value, "--patch-size"))
    except (ValueError, ConfigError):
        pass
    return value


def field_errors(values: dict[str, Any], data_from_layers: bool = False) -> dict[str, str]:
    """Map field name -> message for every bad value, with the CLI's wording.

    Each field is first checked on its own (so several problems show at once), then the whole
    config (for rules that tie fields together), then the data folders' existence and pairing.
    """
    errors: dict[str, str] = {}
    for name, value in values.items():
        if data_from_layers and name in _PLACEHOLDER_DATA:
            continue
        try:
            config_from_values({**_PLACEHOLDER_DATA, name: value}).validate()
        except ConfigError as exc:
            errors[name] = str(exc)
    for name in ("images", "labels", "val_images", "val_labels", "weights"):
        text = str(values.get(name) or "").strip()
        if name in errors or not text or (data_from_layers and name in _PLACEHOLDER_DATA):
            continue
        if not Path(text).expanduser().exists():
            errors[name] = f"{option_name(name)}: {text} does not exist"
    whole = {**values, **(_PLACEHOLDER_DATA if data_from_layers else {})}
    try:
        config = config_from_values(whole).validate()
    except ConfigError as exc:
        errors.setdefault(_field_of(str(exc)) or "images", str(exc))
        return errors
    if errors:
        return errors
    if not data_from_layers:
        _check_pairing(config.images, config.labels, "--images", "--labels", errors)
    if config.val_images is not None:
        _check_pairing(config.val_images, config.val_labels, "--val-images", "--val-labels", errors)
    return errors


def _check_pairing(images: Path, labels: Path, image_option: str, label_option: str, errors: dict) -> None:
    """Listing and pairing file names is cheap; reading the volumes waits for Start."""
    try:
        pair_files(images, labels, image_option, label_option)
    except VoxsegError as exc:
        errors.setdefault(_field_of(str(exc)) or image_option[2:].replace("-", "_"), str(exc))


def _field_of(message: str) -> str | None:
    """`--val-interval: ...` -> `val_interval`; None when the message names no known field."""
    if not message.startswith("--"):
        return None
    option = message[2:].split(":", 1)[0].split(" ", 1)[0]
    name = option.replace("-", "_")
    return name if name in FIELDS_BY_NAME else None


def padding_summary(values: dict[str, Any]) -> str:
    """What the chosen model does to the patch (or volume) size, e.g. `60×64×64 padded to 64×64×64`."""
    try:
        spec = get_model_spec(str(values.get("model", "SegResNet")))
    except ConfigError as exc:
        return str(exc)
    pow2 = bool(values.get("pad_pow2"))
    rule = f"{spec.name} needs {spec.rule()}" + (", power of two" if pow2 else "")
    if values.get("whole_volumes"):
        return f"whole volumes are padded to the next size that fits ({rule})"
    if str(values.get("patch_size", "")).strip().lower() == "auto":
        return f"patch chosen at Start: the largest that fits memory ({rule})"
    try:
        asked = parse_size(values.get("patch_size", 64), "--patch-size")
    except ConfigError as exc:
        return str(exc)
    valid = spec.valid_size(asked, pow2)
    text = "×".join(map(str, asked))
    if valid == asked:
        return f"patch {text}: no padding ({rule})"
    return f"patch {text} padded to {'×'.join(map(str, valid))} ({rule})"
