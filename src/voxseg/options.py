"""Every option is declared once, as a config dataclass field carrying an `Option` in its metadata.

The command line (argparse), YAML files, the napari form and the README's option table are all
generated from those declarations, and `parse_value` checks and normalises any value the same way
for all of them, so the faces cannot drift apart. Standard-library dataclass metadata is enough:
the options are flat, and pydantic's models would add a dependency without removing any code.
No torch here: the command line answers a typo before any heavy import.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from voxseg.errors import ConfigError

#: the sections of the napari form and of `--help`, in the origin document's order
DATA, AUGMENTATION, TRAINING = "Data", "Augmentation", "Training"
#: WNet3D's own options (models trained on images alone)
SELF_SUPERVISED = "Self-supervised (WNet3D)"
#: patch and batch size may be "auto": chosen from measured memory (training/autosize.py)
AUTO = "auto"
_METADATA_KEY = "voxseg"


@dataclass(frozen=True)
class Option:
    """One option: how it is typed, checked, shown and documented.

    `kind` is folder, file, path (either), paths (one or more), text, int, float, bool, choice or size
    (N or Z,Y,X). `parse`, when
    given, normalises a value of a choice or text option (aliases, case) or raises ConfigError.
    """

    help: str
    section: str
    label: str
    kind: str = "text"
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    optional: bool = False  # may be None (blank in the form)
    required: bool = False
    #: required unless this holds (e.g. `--model WNet3D`): shown as required, checked where it applies
    required_unless: str | None = None
    auto: bool = False  # also accepts "auto"
    default_text: str | None = None  # the README's default column, where the value alone says too little
    parse: Callable[[Any], Any] | None = None
    resumable: bool = False  # may change when a run is resumed (everything else is the run's own)
    in_form: bool = True
    positional: bool = False  # typed without a flag (`voxseg predict RUN_DIR ...`)
    spelled: str | None = None  # the flag as typed where the field's name cannot be it (`--from`)


def option(default: Any, *, help: str, section: str, label: str, **details: Any) -> Any:
    """A dataclass field whose metadata declares the option (see `Option`)."""
    return dataclasses.field(
        default=default, metadata={_METADATA_KEY: Option(help, section, label, **details)}
    )


def declared_as(config_class: type, name: str, default: Any, **changes: Any) -> Any:
    """A field declared as `config_class`'s option `name` (its help, checks, label), with its own
    default and any `changes`: an option another command takes again is declared once."""
    declared = next(opt for field, opt, _ in options_of(config_class) if field == name)
    return dataclasses.field(
        default=default, metadata={_METADATA_KEY: dataclasses.replace(declared, **changes)}
    )


def options_of(config_class: type) -> Iterator[tuple[str, Option, Any]]:
    """(name, Option, default) for every declared field of a config dataclass, in declaration order."""
    for f in dataclasses.fields(config_class):
        if _METADATA_KEY in f.metadata:
            yield f.name, f.metadata[_METADATA_KEY], f.default


def spelling(name: str, opt: Option) -> str:
    """How messages name an option: its flag, or its metavar when it is typed without one."""
    if opt.positional:
        return opt.metavar or name.upper()
    return opt.spelled or flag(name)


def flag(name: str) -> str:
    """Command-line spelling of an option, as error messages name it: `val_interval` -> `--val-interval`."""
    return "--" + name.replace("_", "-")


def typed_flag(name: str, opt: Option, default: Any) -> str:
    """The flag the user types: `--no-augment` for an option that is on by default."""
    return flag("no_" + name) if opt.kind == "bool" and default is True else spelling(name, opt)


C = TypeVar("C", bound="Declared")


class Declared:
    """Base of the option dataclasses: their checked copy and their construction from a mapping,
    both from the declarations. A subclass adds the rules that tie options together in `check`."""

    def resolved(self: C, optional: tuple[str, ...] = ()) -> C:
        """A checked, normalised copy (this one is left as it is); ConfigError names the first bad option.
        Options named in `optional` may be missing even if the command requires them (e.g. a
        Predictor's input and output, which are arrays passed to it)."""
        extra = getattr(self, "_extra", None)
        if extra:
            raise ConfigError(f"unknown option(s): {', '.join(sorted(extra))}")
        values = {}
        for name, opt, _ in options_of(type(self)):
            declared = dataclasses.replace(opt, required=False, optional=True) if name in optional else opt
            values[name] = parse_value(name, declared, getattr(self, name))
        self.check(values)
        return dataclasses.replace(self, **values)  # type: ignore[type-var]

    def check(self, values: dict[str, Any]) -> None:
        """Rules across options, on the parsed `values`; raise ConfigError."""

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so the YAML is readable and re-loadable with `--config`."""
        out: dict[str, Any] = {}
        for name, _, _ in options_of(type(self)):
            value = getattr(self, name)
            out[name] = (
                str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
            )
        return out

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls: type[C], path: str | Path) -> C:
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"--config: {path} does not exist") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"--config: cannot read {path}: {exc}".splitlines()[0]) from None
        if not isinstance(data, dict):
            raise ConfigError(f"--config: {path} must hold a mapping of option: value")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build from a mapping (keys with `-` or `_`, or as the flag is spelled: `from` for `from_run`);
        unknown keys are kept for `resolved()` to name."""
        aliases = {o.spelled.lstrip("-").replace("-", "_"): n for n, o, _ in options_of(cls) if o.spelled}
        keys = (str(k).replace("-", "_") for k in data)
        data = {aliases.get(key, key): value for key, value in zip(keys, data.values(), strict=True)}
        known = {name for name, _, _ in options_of(cls)}
        config = cls(**{k: v for k, v in data.items() if k in known})
        config._extra = {k: v for k, v in data.items() if k not in known}  # type: ignore[attr-defined]
        return config


# -- values -----------------------------------------------------------------------------------------


def parse_size(value: Any, option_flag: str) -> tuple[int, int, int]:
    """Accept `64`, `"64"`, `"32,64,64"`, `"32x64x64"` or a sequence of three ints; return (Z, Y, X)."""
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"{option_flag}: expected N or Z,Y,X integers, got {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        numbers = [value]
    else:
        try:
            numbers = [int(v) for v in value]
        except (TypeError, ValueError):
            raise ConfigError(f"{option_flag}: expected N or Z,Y,X integers, got {value!r}") from None
    if len(numbers) == 1:
        numbers = numbers * 3
    if len(numbers) != 3 or any(n < 1 for n in numbers):
        raise ConfigError(f"{option_flag}: expected one or three positive integers, got {value!r}")
    return (numbers[0], numbers[1], numbers[2])


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def parse_value(name: str, opt: Option, value: Any) -> Any:
    """`value` checked and normalised to the option's type; a ConfigError names the option."""
    where = spelling(name, opt)
    if opt.kind == "paths" and not isinstance(value, str | Path) and value is not None:
        paths = tuple(Path(v).expanduser().resolve() for v in value if str(v).strip())
        if not paths and opt.required:
            raise ConfigError(f"{where} is required")
        return paths
    if value is None or (isinstance(value, str) and not value.strip() and opt.kind != "bool"):
        if opt.required:
            raise ConfigError(f"{where} is required")
        if opt.optional:
            return None
        raise ConfigError(f"{where} must be given")
    if opt.auto and is_auto(value):
        return AUTO
    if opt.kind in ("folder", "file", "path"):  # absolute, so config.yaml and --resume work from anywhere
        return Path(value).expanduser().resolve()
    if opt.kind == "paths":  # a single path given as text
        return (Path(value).expanduser().resolve(),)
    if opt.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if opt.kind == "size":
        return parse_size(value, where)
    if opt.kind in ("int", "float"):
        return _number(where, opt, value)
    if opt.parse is not None:
        return opt.parse(value)
    if opt.choices and value not in opt.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(opt.choices)}")
    return str(value)


def _number(where: str, opt: Option, value: Any) -> int | float:
    integer = opt.kind == "int"
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    try:
        number = (int if integer else float)(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(
            f"{where}: expected {'an integer' if integer else 'a number'}, got {value!r}"
        ) from None
    if integer and float(value) != number:
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    low, high = opt.low, opt.high
    too_low = low is not None and (number <= low if opt.open_low else number < low)
    too_high = high is not None and (number >= high if opt.open_high else number > high)
    if too_low or too_high:
        raise ConfigError(f"{where}: got {value}, but it must be {_bounds(opt)}")
    return number


def _bounds(opt: Option) -> str:
    """An option's range in words: "at least 1", "between 0 and 0.9", "above 0"."""
    low = None if opt.low is None else (f"above {opt.low:g}" if opt.open_low else f"at least {opt.low:g}")
    high = None if opt.high is None else (f"below {opt.high:g}" if opt.open_high else f"at most {opt.high:g}")
    if low and high and not (opt.open_low or opt.open_high):
        return f"between {opt.low:g} and {opt.high:g}"
    return " and ".join(part for part in (low, high) if part)


def default_text(opt: Option, default: Any) -> str:
    """The default as the README and `--help` show it."""
    if opt.default_text is not None:
        return opt.default_text
    if opt.required:
        return "required"
    if opt.required_unless:
        return f"required unless {opt.required_unless}"
    if opt.kind == "bool":
        return "on" if default else "off"
    if default is None:
        return "—"
    if isinstance(default, tuple) and len(set(default)) == 1:
        return str(default[0])
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return f"{default:g}" if isinstance(default, float) else str(default)


# -- the faces --------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, config_class: type, extra: dict[str, Option]) -> None:
    """One flag per declared option, grouped by section; `extra` holds command-only options.

    Unset flags are absent from the namespace (SUPPRESS), so a YAML file's values or the defaults
    stay; values arrive as text and are checked by `parse_value`, with the same messages as YAML.
    """
    groups: dict[str, Any] = {}
    required: set[str] = set()
    for name, opt, default in [(n, o, None) for n, o in extra.items()] + list(options_of(config_class)):
        group = parser
        if opt.section:
            group = groups.setdefault(opt.section, parser.add_argument_group(opt.section.lower()))
        text = _terminal_help(opt, default, command_only=name in extra, config_file="config" in extra)
        if opt.positional:
            action = group.add_argument(name, metavar=opt.metavar, help=text)
        elif opt.kind == "bool":
            store = "store_false" if default is True else "store_true"
            spelled = typed_flag(name, opt, default)
            action = group.add_argument(
                spelled, dest=name, action=store, default=argparse.SUPPRESS, help=text
            )
        else:
            many = {"nargs": "+"} if opt.kind == "paths" else {}
            action = group.add_argument(
                spelling(name, opt),
                dest=name,
                metavar=opt.metavar,
                default=argparse.SUPPRESS,
                help=text,
                **many,
            )
        if opt.required or opt.required_unless:  # the exception is in the option's help
            required.add(action.dest)
    parser.formatter_class = functools.partial(_UsageShowsRequired, required=frozenset(required))


class _UsageShowsRequired(argparse.HelpFormatter):
    """The usage line writes a required option as `--images DIR`, not `[--images DIR]`: argparse
    itself does not require them, because a `--config` file or `--resume` may give them instead."""

    def __init__(self, prog: str, required: frozenset[str] = frozenset()) -> None:
        super().__init__(prog)
        self.required = required

    def add_usage(self, usage: str | None, actions: Any, groups: Any, prefix: str | None = None) -> None:
        super().add_usage(usage, [self._shown(action) for action in actions], groups, prefix)

    def _shown(self, action: argparse.Action) -> argparse.Action:
        if action.dest not in self.required or not action.option_strings:
            return action
        shown = copy.copy(action)
        shown.required = True
        return shown


def flag_help(opt: Option, default: Any) -> str:
    """What a flag does, as typed: `--no-augment` turns off what its help describes."""
    return f"turn off (on by default): {opt.help}" if opt.kind == "bool" and default is True else opt.help


def _terminal_help(opt: Option, default: Any, command_only: bool, config_file: bool) -> str:
    """The help as `--help` shows it: no Markdown, and the default where it says something."""
    text = flag_help(opt, default).replace("`", "")
    shown = default_text(opt, default).replace("`", "")
    if opt.required:
        if not opt.positional:  # argparse itself requires positionals
            text += " (required" + (", here or in the --config file)" if config_file else ")")
    elif opt.required_unless:
        text += f" ({shown})"
    elif not (command_only or opt.kind == "bool" or shown == "—"):
        text += f" (default {shown})"
    return text.replace("%", "%%")  # argparse formats help strings with %


def markdown_table(config_class: type, extra: dict[str, Option]) -> str:
    """The README's option table: `| option | default | meaning |`, one row per option."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    declared = [(n, o, None) for n, o in extra.items()] + list(options_of(config_class))
    for name, opt, default in declared:
        spelled = opt.metavar if opt.positional else typed_flag(name, opt, default)
        if opt.metavar and not opt.positional:
            spelled += f" {opt.metavar}" + (" ..." if opt.kind == "paths" else "")
        # a `--no-X` flag is off unless typed; what it turns off is on, as its help says first
        shown = "off" if typed_flag(name, opt, default).startswith("--no-") else default_text(opt, default)
        if shown not in ("required", "on", "off", "—") and opt.default_text is None:
            shown = f"`{shown}`"
        rows.append(f"| `{spelled}` | {shown} | {flag_help(opt, default)} |")
    return "\n".join(rows) + "\n"
