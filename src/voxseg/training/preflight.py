"""The checks that need no torch: options, folders, file pairing, the run folder's name, and labels
whose values look like another convention than the one they will be read with (one pass over the
label files, `data.label_checks`). The command line runs them before importing the engine, so a typo
or sparse labels without `--label-map` are answered at once (about 0.1 s instead of the ~6 s torch
and MONAI take to import)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from voxseg.config import TrainConfig
from voxseg.data.discovery import Pair, list_volumes, pair_files
from voxseg.data.label_checks import label_warnings
from voxseg.errors import ConfigError
from voxseg.runtime.files import numbered_path


@dataclass(frozen=True)
class Preflight:
    """A resolved config, its run folder (not created yet) and its paired files."""

    config: TrainConfig
    run_dir: Path
    pairs: list[Pair]
    val_pairs: list[Pair] | None
    warnings: tuple[str, ...] = ()  # about the labels' values, for the run's log


def preflight(config: TrainConfig, resume_dir: Path | None = None) -> Preflight:
    """Check everything that is cheap to check; raise VoxsegError naming the option or file."""
    config = config.resolved()
    if config.results.exists() and not config.results.is_dir():
        raise ConfigError(f"--results: {config.results} exists and is not a folder")
    config.check_labels_given()
    run_dir = Path(resume_dir) if resume_dir is not None else choose_run_dir(config)
    if config.labels is None:  # trained on images alone: each volume will give itself a partition
        pairs = [Pair(image, None) for image in list_volumes(config.images, "--images")]
    else:
        pairs = pair_files(config.images, config.labels, label_name=config.label_name)
    val_pairs = None
    if config.val_images is not None:
        val_pairs = pair_files(
            config.val_images, config.val_labels, "--val-images", "--val-labels", config.label_name
        )
    return Preflight(config, run_dir, pairs, val_pairs, _label_warnings(config, resume_dir, pairs, val_pairs))


def _label_warnings(
    config: TrainConfig, resume_dir: Path | None, pairs: list[Pair], val_pairs: list[Pair] | None
) -> tuple[str, ...]:
    """`label_warnings` unless a `--label-map` says what the values mean, or the run resumes: its labels
    were accepted when it started, and a resume may not add the option a refusal would ask for."""
    if config.label_map is not None or resume_dir is not None:
        return ()
    return tuple(label_warnings([*pairs, *(val_pairs or [])], config.reading()))


def choose_run_dir(config: TrainConfig) -> Path:
    """`<results>/<run-name>`; an explicit name that exists is refused, a default one gets a suffix."""
    if config.run_name:
        run_dir = config.results / config.run_name
        if run_dir.exists():
            raise ConfigError(f"--run-name: {run_dir} already exists; a run folder is never overwritten")
        archive = _archive(run_dir)
        if config.zip and archive.exists():
            raise ConfigError(f"--run-name: {archive} already exists; --zip never overwrites it")
        return run_dir
    base = config.results / f"{config.model}_{time.strftime('%Y%m%d-%H%M%S')}"
    return numbered_path(base, lambda path: path.exists() or _archive(path).exists())


def _archive(run_dir: Path) -> Path:
    return run_dir.with_name(run_dir.name + ".zip")
