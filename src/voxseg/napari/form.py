"""What the Train widget shows, and how its values become a TrainConfig. No Qt here: tested plainly.

The fields are generated from the option declarations (`voxseg.config`, `voxseg.options`): same
names, defaults, help and checks as the command line, so the GUI cannot drift from the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxseg.config import TrainConfig
from voxseg.data.discovery import pair_files
from voxseg.errors import ConfigError, VoxsegError
from voxseg.models.registry import get_model_spec
from voxseg.options import AUGMENTATION, DATA, TRAINING, flag, is_auto, options_of, parse_size, parse_value

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


def _widget_kind(kind: str, optional: bool, auto: bool) -> str:
    """Sizes, `auto`-able numbers and numbers that may be blank are typed as text."""
    if kind == "size" or auto or (kind == "int" and optional):
        return "text"
    return kind


FIELDS: tuple[Field, ...] = tuple(
    Field(
        name,
        opt.label,
        opt.section,
        _widget_kind(opt.kind, opt.optional, opt.auto),
        opt.help.replace("`", ""),
        opt.choices,
        opt.optional,
    )
    for name, opt, _ in options_of(TrainConfig)
    if opt.in_form
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}
_OPTIONS = {name: opt for name, opt, _ in options_of(TrainConfig)}


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
        elif _OPTIONS[f.name].kind == "size":
            value = _size_text(value)
        elif isinstance(value, Path) or f.kind in ("folder", "file", "text"):
            value = str(value)
        elif f.kind == "float" and isinstance(value, float):
            value = f"{value:.6g}"
        values[f.name] = value
    return values


def _size_text(value: Any) -> str:
    """(64, 64, 64) -> "64"; (32, 64, 64) -> "32,64,64"; anything unparsable is shown as given."""
    if is_auto(value):
        return "auto"
    try:
        sides = parse_size(value, "--patch-size")
    except ConfigError:
        return str(value)
    return str(sides[0]) if len(set(sides)) == 1 else ",".join(map(str, sides))


def config_from_values(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from widget values. Values that parse become their number or size (so saved YAML
    holds numbers), blank optional fields None; the rest stay as typed, for `resolved()` to name."""
    return TrainConfig.from_dict({name: _typed(name, value) for name, value in values.items()})


def _typed(name: str, value: Any) -> Any:
    opt = _OPTIONS[name]
    if not isinstance(value, str) or opt.kind in ("folder", "file", "text", "choice"):
        return None if isinstance(value, str) and not value.strip() and opt.optional else value
    try:
        return parse_value(name, opt, value)
    except ConfigError:
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
            config_from_values({**_PLACEHOLDER_DATA, name: value}).resolved()
        except ConfigError as exc:
            errors[name] = str(exc)
    for name in ("images", "labels", "val_images", "val_labels", "weights"):
        text = str(values.get(name) or "").strip()
        if name in errors or not text or (data_from_layers and name in _PLACEHOLDER_DATA):
            continue
        if not Path(text).expanduser().exists():
            errors[name] = f"{flag(name)}: {text} does not exist"
    whole = {**values, **(_PLACEHOLDER_DATA if data_from_layers else {})}
    try:
        config = config_from_values(whole).resolved()
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
    """What the chosen model does to the patch (or volume) size, e.g. `patch 60×64×64 padded to 64×64×64`."""
    try:
        spec = get_model_spec(str(values.get("model", "SegResNet")))
    except ConfigError as exc:
        return str(exc)
    pow2 = bool(values.get("pad_pow2"))
    rule = f"{spec.name} needs {spec.rule()}" + (", power of two" if pow2 else "")
    if values.get("whole_volumes"):
        return f"whole volumes are padded to the next size that fits ({rule})"
    if is_auto(values.get("patch_size", "")):
        return f"patch chosen at Start: the largest that fits memory ({rule})"
    try:
        asked = parse_size(values.get("patch_size", 64), "--patch-size")
    except ConfigError as exc:
        return str(exc)
    return f"patch {spec.padding_sentence(asked, pow2)}"
