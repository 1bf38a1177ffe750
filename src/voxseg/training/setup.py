"""Everything that can fail because of user input happens here, before a run folder exists."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from voxseg.config import AUTO, TrainConfig
from voxseg.data.discovery import pair_files
from voxseg.data.volumes import Volume, load_volumes, pad_volume, split_volumes
from voxseg.errors import ConfigError
from voxseg.models.registry import ModelSpec, build_model, get_model_spec
from voxseg.models.weights import load_weights_file
from voxseg.training.autosize import choose_sizes
from voxseg.training.performance import Precision, resolve_precision


@dataclass
class PreparedRun:
    """A validated config with its data loaded and checked, ready for the engine."""

    config: TrainConfig
    device: torch.device
    spec: ModelSpec
    train_volumes: list[Volume]
    val_volumes: list[Volume]
    window: tuple[int, int, int]  # training patch = validation sliding window
    run_dir: Path
    initial_state: dict[str, torch.Tensor] | None = None  # from --weights / --pretrained
    precision: Precision = Precision("fp32", "default")
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; an unavailable explicit choice is an error."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device: {name} requested but this PyTorch sees no CUDA GPU")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device: {name} requested but only {torch.cuda.device_count()} GPU(s) exist")
    if name == "mps" and not mps_ok:
        raise ConfigError("--device: mps requested but Apple MPS is not available")
    return torch.device(name)


def _fmt(size: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in size)


def choose_run_dir(config: TrainConfig) -> Path:
    """`<results>/<run-name>`; an explicit name that exists is refused, a default one gets a suffix."""
    if config.run_name:
        run_dir = config.results / config.run_name
        if run_dir.exists():
            raise ConfigError(f"--run-name: {run_dir} already exists; a run folder is never overwritten")
        archive = run_dir.with_name(run_dir.name + ".zip")
        if config.zip and archive.exists():
            raise ConfigError(f"--run-name: {archive} already exists; --zip never overwrites it")
        return run_dir
    base = f"{config.model}_{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, n = config.results / base, 1
    while run_dir.exists() or run_dir.with_name(run_dir.name + ".zip").exists():
        n += 1
        run_dir = config.results / f"{base}_{n}"
    return run_dir


def prepare_run(config: TrainConfig, resume_dir: Path | None = None) -> PreparedRun:
    """Validate the config, pair/check/load the data, split it, decide patch size and padding.

    With `resume_dir` the run continues in that folder; otherwise a new run folder is chosen.
    """
    config.validate()
    if config.results.exists() and not config.results.is_dir():
        raise ConfigError(f"--results: {config.results} exists and is not a folder")
    run_dir = Path(resume_dir) if resume_dir is not None else choose_run_dir(config)
    device = resolve_device(config.device)
    spec = get_model_spec(config.model)
    notes: list[str] = []

    pairs = pair_files(config.images, config.labels)
    volumes, warnings = load_volumes(pairs)
    notes.append(f"data: {len(pairs)} image/label pair(s) from {config.images} and {config.labels}")
    if config.val_images is not None:
        val_pairs = pair_files(config.val_images, config.val_labels, "--val-images", "--val-labels")
        val_volumes, val_warnings = load_volumes(val_pairs)
        warnings += val_warnings
        train_volumes = volumes
        notes.append(
            f"validation: {len(val_volumes)} volume(s) from {config.val_images}; "
            f"all {len(volumes)} training volume(s) used for training"
        )
    else:
        train_volumes, val_volumes, how = split_volumes(
            volumes, config.train_fraction, config.seed, min_side=spec.min_side
        )
        notes.append(f"validation: {how}")

    precision = resolve_precision(config.precision, device)
    notes.append(f"precision {precision.name} ({precision.reason})")
    if precision.warning:
        warnings.append(precision.warning)
    _resolve_auto_sizes(config, spec, device, precision, train_volumes, notes)
    if config.whole_volumes:
        asked = tuple(max(v.shape[axis] for v in train_volumes) for axis in range(3))
        notes.append(f"whole volumes: largest training volume {_fmt(asked)}")
    else:
        asked = config.patch_size
    window = spec.valid_size(asked, config.pad_pow2)
    size_rule = f"{spec.name} needs {spec.rule()}" + (
        ", power of two (--pad-pow2)" if config.pad_pow2 else ""
    )
    if window == tuple(asked):
        notes.append(f"padding: none, {_fmt(window)} is already valid ({size_rule})")
    else:
        notes.append(f"padding: {_fmt(asked)} padded to {_fmt(window)} ({size_rule})")
    padded = []
    for volume in train_volumes:
        grown = pad_volume(volume, window)
        if grown is not volume:
            notes.append(f"padding: {volume.name} {_fmt(volume.shape)} padded to {_fmt(grown.shape)}")
        padded.append(grown)
    initial_state = None if resume_dir is not None else _initial_weights(config, notes)
    return PreparedRun(
        config,
        device,
        spec,
        padded,
        val_volumes,
        window,
        run_dir,
        initial_state=initial_state,
        precision=precision,
        notes=notes,
        warnings=warnings,
    )


def _resolve_auto_sizes(
    config: TrainConfig,
    spec: ModelSpec,
    device: torch.device,
    precision: Precision,
    volumes: list[Volume],
    notes: list[str],
) -> None:
    """Replace `auto` patch size / batch size in the config by measured choices (config.yaml keeps them)."""
    if AUTO not in (config.patch_size, config.batch_size):
        return
    smallest = tuple(min(v.shape[axis] for v in volumes) for axis in range(3))
    if config.whole_volumes:  # the patch is the (padded) largest volume; only the batch can be chosen
        largest = tuple(max(v.shape[axis] for v in volumes) for axis in range(3))
        patch = spec.valid_size(largest, config.pad_pow2)
        patches_per_epoch = len(volumes)
    else:  # memory is measured for the window the model really trains on (after padding)
        patch = config.patch_size
        if patch != AUTO:
            patch = spec.valid_size(patch, config.pad_pow2)
        patches_per_epoch = len(volumes) * config.samples_per_image
    chosen_patch, chosen_batch, lines = choose_sizes(
        spec, device, precision, smallest, patch, config.batch_size, patches_per_epoch, config.pad_pow2
    )
    if not config.whole_volumes:
        config.patch_size = chosen_patch
    config.batch_size = chosen_batch
    notes.extend(lines)


def _initial_weights(config: TrainConfig, notes: list[str]) -> dict[str, torch.Tensor] | None:
    """Read and check the starting weights now, so a bad file is refused before any run folder exists."""
    if config.pretrained:
        from voxseg.models.download import fetch_weights

        path, option, origin = (
            fetch_weights(config.model),
            "--pretrained",
            "published napari-cellseg3d weights",
        )
    elif config.weights is not None:
        path, option, origin = config.weights, "--weights", "custom weights"
    else:
        return None
    model = build_model(config.model)
    described = load_weights_file(model, config.model, path, option)
    notes.append(f"weights: {origin}, {described}")
    return model.state_dict()
