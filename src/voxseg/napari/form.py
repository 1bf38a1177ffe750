"""What the widgets show, and how their values become a config. No Qt here: tested plainly.

The fields are generated from the option declarations (`voxseg.config`, `voxseg.options`): same
names, defaults, help and checks as the command line, so the GUI cannot drift from the CLI.
`ConfigForm` does this for any declared config: `TRAIN_FORM` over TrainConfig (with the data
checks below), the Predict widget's over PredictConfig.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxseg.config import TrainConfig
from voxseg.data.discovery import list_volumes, pair_files
from voxseg.errors import ConfigError, VoxsegError
from voxseg.models.registry import get_model_spec
from voxseg.options import (
    is_auto,
    options_of,
    parse_size,
    parse_value,
    spelling,
)

#: stands in for a required path while another field is checked on its own, or for one the widget hides
PLACEHOLDER = "."


@dataclass(frozen=True)
class Field:
    """One input of a widget. `kind`: folder, file, path (either), text, int, float, bool or choice."""

    name: str
    label: str
    section: str
    kind: str
    help: str = ""
    choices: tuple[str, ...] = ()
    optional: bool = False  # may be left blank (None in the config)
    placeholder: str = ""  # shown greyed in a blank field: what leaving it blank means


def _widget_kind(kind: str, optional: bool, auto: bool) -> str:
    """Sizes, `auto`-able numbers and numbers that may be blank are typed as text."""
    if kind == "size" or auto or (kind in ("int", "float") and optional):
        return "text"
    return kind


def fields_of(config_class: type, exclude: Iterable[str] = ()) -> tuple[Field, ...]:
    """The form fields of a declared config, in declaration order, without the `exclude`d options."""
    excluded = set(exclude)
    return tuple(
        Field(
            name,
            opt.label,
            opt.section,
            _widget_kind(opt.kind, opt.optional, opt.auto),
            opt.help.replace("`", ""),
            opt.choices,
            opt.optional,
            (opt.default_text or "").replace("`", "") if opt.optional else "",
        )
        for name, opt, _ in options_of(config_class)
        if opt.in_form and name not in excluded
    )


class ConfigForm:
    """A widget's fields over a declared config class, and the way back from typed values to a config.

    Options in `exclude` are not shown; required ones among them (files the widget provides itself)
    are filled with a placeholder when the form is checked.
    """

    def __init__(self, config_class: type, exclude: Iterable[str] = ()) -> None:
        self.config_class = config_class
        self.fields = fields_of(config_class, exclude)
        self.by_name = {f.name: f for f in self.fields}
        self.options = {name: opt for name, opt, _ in options_of(config_class)}
        required = [name for name, opt in self.options.items() if opt.required]
        #: every required option, so that one field can be checked on its own
        self.placeholders = dict.fromkeys(required, PLACEHOLDER)
        #: the required options the widget does not show
        self.hidden = {name: PLACEHOLDER for name in required if name not in self.by_name}

    @property
    def sections(self) -> tuple[str, ...]:
        """The sections that hold a field, in declaration order."""
        return tuple(dict.fromkeys(f.section for f in self.fields))

    def default_values(self) -> dict[str, Any]:
        """The config's own defaults, as the widget displays them."""
        return self.display_values(self.config_class())

    def display_values(self, config: Any) -> dict[str, Any]:
        """A config's values in widget form (paths and sizes as text, None as blank)."""
        values: dict[str, Any] = {}
        for f in self.fields:
            value = getattr(config, f.name)
            if value is None:
                value = ""
            elif self.options[f.name].kind == "size":
                value = _size_text(value)
            elif isinstance(value, Path) or f.kind in ("folder", "file", "path", "text"):
                value = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            elif f.kind == "float" and isinstance(value, float):
                value = f"{value:.6g}"
            values[f.name] = value
        return values

    def config_from_values(self, values: dict[str, Any]) -> Any:
        """A config from widget values. Values that parse become their number or size (so saved YAML
        holds numbers), blank optional fields None; the rest stay as typed, for `resolved()` to name."""
        return self.config_class.from_dict({name: self.typed(name, value) for name, value in values.items()})

    def typed(self, name: str, value: Any) -> Any:
        opt = self.options[name]
        if not isinstance(value, str) or opt.kind in ("folder", "file", "path", "text", "choice"):
            return None if isinstance(value, str) and not value.strip() and opt.optional else value
        try:
            return parse_value(name, opt, value)
        except ConfigError:
            return value

    def check(
        self,
        values: dict[str, Any],
        skip: Iterable[str] = (),
        must_exist: Iterable[str] = (),
        fallback: str | None = None,
    ) -> tuple[dict[str, str], Any]:
        """(field name -> message for every bad value, the resolved config or None), with the CLI's wording.

        Each field is first checked on its own (so several problems show at once), then the paths in
        `must_exist`, then the whole config (for rules that tie fields together; a message that names
        no field lands on `fallback`, else the first field). Fields in `skip` are not checked: a
        placeholder stands in for them. The config is None when the whole check failed.
        """
        skipped = set(skip)
        errors: dict[str, str] = {}
        for name, value in values.items():
            if name in skipped:
                continue
            try:
                self.config_from_values({**self.placeholders, name: value}).resolved()
            except ConfigError as exc:
                errors[name] = str(exc)
        for name in must_exist:
            text = str(values.get(name) or "").strip()
            if name in errors or not text or name in skipped:
                continue
            if not Path(text).expanduser().exists():
                errors[name] = f"{spelling(name, self.options[name])}: {text} does not exist"
        whole = {**self.hidden, **values, **{name: PLACEHOLDER for name in skipped}}
        try:
            config = self.config_from_values(whole).resolved()
        except ConfigError as exc:
            errors.setdefault(self.field_of(str(exc)) or fallback or self.fields[0].name, str(exc))
            return errors, None
        return errors, config

    def field_of(self, message: str) -> str | None:
        """`--val-interval: ...` -> `val_interval`, `RUN_DIR_OR_WEIGHTS: ...` -> `source`; None when the
        message names no field of this form."""
        for name in self.by_name:
            where = spelling(name, self.options[name])
            if message.startswith(where) and message[len(where) : len(where) + 1] in (":", " ", ""):
                return name
        return None


#: the Train widget's form
TRAIN_FORM = ConfigForm(TrainConfig)
#: stands in for the data folders when only one field is checked, or when layers are the data
_PLACEHOLDER_DATA = {"images": PLACEHOLDER, "labels": PLACEHOLDER}
_MUST_EXIST = ("images", "labels", "val_images", "val_labels", "weights")


def _size_text(value: Any) -> str:
    """(64, 64, 64) -> "64"; (32, 64, 64) -> "32,64,64"; anything unparsable is shown as given."""
    if is_auto(value):
        return "auto"
    try:
        sides = parse_size(value, "--patch-size")
    except ConfigError:
        return str(value)
    return str(sides[0]) if len(set(sides)) == 1 else ",".join(map(str, sides))


def field_errors(values: dict[str, Any], data_from_layers: bool = False) -> dict[str, str]:
    """Map field name -> message for every bad value, with the CLI's wording.

    Each field is first checked on its own (so several problems show at once), then the whole
    config (for rules that tie fields together), then the data folders' existence and pairing.
    """
    skip = tuple(_PLACEHOLDER_DATA) if data_from_layers else ()
    errors, config = TRAIN_FORM.check(values, skip=skip, must_exist=_MUST_EXIST, fallback="images")
    if config is None or errors:
        return errors
    if not data_from_layers:
        try:
            config.check_labels_given()
            if config.labels is None:  # trained on images alone
                list_volumes(config.images, "--images")
            else:
                pair_files(config.images, config.labels, "--images", "--labels", config.label_name)
        except VoxsegError as exc:
            errors.setdefault(TRAIN_FORM.field_of(str(exc)) or "images", str(exc))
    if config.val_images is not None:
        _check_pairing(
            config.val_images, config.val_labels, "--val-images", "--val-labels", config.label_name, errors
        )
    return errors


def _check_pairing(
    images: Path, labels: Path, image_option: str, label_option: str, label_name: str | None, errors: dict
) -> None:
    """Listing and pairing file names is cheap; reading the volumes waits for Start."""
    try:
        pair_files(images, labels, image_option, label_option, label_name)
    except VoxsegError as exc:
        errors.setdefault(TRAIN_FORM.field_of(str(exc)) or image_option[2:].replace("-", "_"), str(exc))


def padding_summary(values: dict[str, Any]) -> str:
    """What the chosen model does to the patch (or volume) size, e.g. `patch 60×64×64 padded to 64×64×64`."""
    try:
        spec = get_model_spec(str(values.get("model", TrainConfig.model)))
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
