"""The one training configuration, shared by the CLI, YAML files, the Python API and the GUI.

Every option is a dataclass field with its default; `validate()` checks them all before anything
touches the disk, and each message names the option (as the CLI spells it) and the problem.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voxseg.errors import ConfigError
from voxseg.losses import resolve_loss_name
from voxseg.models.registry import resolve_model_name

SCHEDULERS = ("none", "plateau", "cosine", "poly")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: what may change when a run is resumed: everything else is the run's own config.yaml
RESUME_OVERRIDES = ("epochs", "device", "workers", "precision", "compile")
#: patch size and batch size may be "auto": chosen from measured memory (training/autosize.py)
AUTO = "auto"

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def option_name(field_name: str) -> str:
    """CLI spelling of a config field, used in error messages: `val_interval` -> `--val-interval`."""
    return "--" + field_name.replace("_", "-")


def parse_size(value: Any, option: str) -> tuple[int, int, int]:
    """Accept `64`, `"64"`, `"32,64,64"` or a sequence of three ints; return (Z, Y, X)."""
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").split(",") if p.strip()]
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"{option}: expected N or Z,Y,X integers, got {value!r}") from None
    elif isinstance(value, int):
        numbers = [value]
    else:
        try:
            numbers = [int(v) for v in value]
        except (TypeError, ValueError):
            raise ConfigError(f"{option}: expected N or Z,Y,X integers, got {value!r}") from None
    if len(numbers) == 1:
        numbers = numbers * 3
    if len(numbers) != 3 or any(n < 1 for n in numbers):
        raise ConfigError(f"{option}: expected one or three positive integers, got {value!r}")
    return (numbers[0], numbers[1], numbers[2])


@dataclass
class TrainConfig:
    """Everything a training run needs. Paths may be str or Path; `validate()` normalises them."""

    # Data
    images: Path | None = None
    labels: Path | None = None
    results: Path = Path("results")
    val_images: Path | None = None
    val_labels: Path | None = None
    train_fraction: float = 0.8
    run_name: str | None = None
    zip: bool = False
    pretrained: bool = False
    weights: Path | None = None
    # Dataset and augmentation
    whole_volumes: bool = False
    patch_size: tuple[int, int, int] | str = (64, 64, 64)  # or "auto": the largest that fits memory
    samples_per_image: int = 4
    foreground_share: float = 0.33  # nnU-Net's oversample_foreground_percent
    pad_pow2: bool = False
    augment: bool = True
    # Training
    model: str = "SegResNet"
    loss: str = "dice"
    lr: float = 1e-3
    batch_size: int | str = 2  # or "auto": the largest that fits memory
    epochs: int = 50
    val_interval: int = 1
    seed: int = 0
    device: str = "auto"
    workers: int | None = None
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: bool = True  # torch.compile on CUDA (never on the CPU, where compiling costs more than it saves)
    scheduler: str = "plateau"
    warmup_epochs: int = 0
    early_stop_patience: int = 0  # validations without improvement; 0 = never stop early
    # Extra fields a later face may want to carry are rejected, never silently ignored.
    _extra: dict = field(default_factory=dict, repr=False, compare=False)

    def validate(self) -> TrainConfig:
        """Check every option and normalise types; raise ConfigError naming the first bad option."""
        if self._extra:
            names = ", ".join(sorted(self._extra))
            raise ConfigError(f"unknown option(s): {names}")
        for name in ("images", "labels"):
            if getattr(self, name) in (None, ""):
                raise ConfigError(f"{option_name(name)} is required")
        for name in ("images", "labels", "val_images", "val_labels", "results", "weights"):
            value = getattr(self, name)
            if value not in (None, ""):  # absolute, so config.yaml and --resume work from anywhere
                setattr(self, name, Path(value).expanduser().resolve())
            else:
                setattr(self, name, None)
        if self.results is None:
            raise ConfigError("--results must name a folder")
        if self.pretrained is True and self.weights is not None:
            raise ConfigError("--pretrained and --weights exclude each other: choose one starting point")
        if (self.val_images is None) != (self.val_labels is None):
            raise ConfigError("--val-images and --val-labels must be given together")
        self.model = resolve_model_name(self.model)
        self.loss = resolve_loss_name(self.loss)
        self.patch_size = AUTO if _is_auto(self.patch_size) else parse_size(self.patch_size, "--patch-size")
        if _is_auto(self.batch_size):
            self.batch_size = AUTO
        self._check_number("train_fraction", float, low=0.0, high=1.0, open_low=True, open_high=True)
        self._check_number("foreground_share", float, low=0.0, high=1.0)
        self._check_number("lr", float, low=0.0, open_low=True)
        for name in ("batch_size", "epochs", "val_interval", "samples_per_image"):
            if getattr(self, name) != AUTO:
                self._check_number(name, int, low=1)
        self._check_number("seed", int, low=0, high=2**32 - 1)
        self._check_number("warmup_epochs", int, low=0)
        self._check_number("early_stop_patience", int, low=0)
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"--warmup-epochs: {self.warmup_epochs} must be fewer than --epochs {self.epochs}"
            )
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"--scheduler: {self.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
        if self.workers is not None:
            self._check_number("workers", int, low=0)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        for name in ("zip", "whole_volumes", "pad_pow2", "augment", "pretrained", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{option_name(name)}: expected true or false, got {getattr(self, name)!r}")
        self.device = _check_device(self.device)
        if self.run_name is not None:
            self.run_name = str(self.run_name)
            if not self.run_name or self.run_name in (".", "..") or any(c in self.run_name for c in "/\\"):
                raise ConfigError(f"--run-name: {self.run_name!r} is not a valid folder name")
        return self

    def _check_number(
        self,
        name: str,
        kind: type,
        low: float | None = None,
        high: float | None = None,
        open_low: bool = False,
        open_high: bool = False,
    ) -> None:
        value = getattr(self, name)
        option = option_name(name)
        if isinstance(value, bool):
            raise ConfigError(f"{option}: expected a number, got {value!r}")
        try:
            number = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(
                f"{option}: expected {'an integer' if kind is int else 'a number'}, got {value!r}"
            ) from None
        if kind is int and float(value) != number:
            raise ConfigError(f"{option}: expected an integer, got {value!r}")
        if kind is float and not math.isfinite(number):
            raise ConfigError(f"{option}: expected a finite number, got {value!r}")
        too_low = low is not None and (number <= low if open_low else number < low)
        too_high = high is not None and (number >= high if open_high else number > high)
        if too_low or too_high:
            left = "(" if open_low else "["
            right = ")" if open_high else "]"
            span = f"{left}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{right}"
            raise ConfigError(f"{option}: {value!r} is outside {span}")
        setattr(self, name, number)

    # YAML in and out -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so the YAML is readable and re-loadable with `--config`."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are kept aside so `validate()` can name them."""
        known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        extra = {k: v for k, v in data.items() if k not in known}
        config = cls(**{k: v for k, v in data.items() if k in known})
        config._extra = extra
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"--config: {path} does not exist") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"--config: cannot read {path}: {exc}".splitlines()[0]) from None
        if not isinstance(data, dict):
            raise ConfigError(f"--config: {path} must hold a mapping of option: value")
        return cls.from_dict({k.replace("-", "_"): v for k, v in data.items()})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def for_resume(cls, run_dir: str | Path, overrides: dict[str, Any]) -> TrainConfig:
        """The run's own config.yaml with the few options a resume may change (RESUME_OVERRIDES)."""
        saved = Path(run_dir) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume: {saved} does not exist; give a run folder")
        return cls.from_dict({**cls.from_yaml(saved).to_dict(), **overrides})


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def _check_device(device: Any) -> str:
    text = str(device).strip().lower()
    kind, sep, index = text.partition(":")
    if kind not in DEVICE_CHOICES or (sep and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"--device: {device!r} is not one of auto, cpu, cuda, cuda:N, mps")
    return text
