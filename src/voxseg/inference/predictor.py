"""`voxseg predict`: apply a trained model to 3D TIFF volumes of any size.

Every input is checked, and every output name is checked for an existing file, before the model
is loaded or anything is written. Each volume is then read window row by window row
(`voxseg.io.tiff`, `streaming`), its mask (and probabilities) written plane by plane, and its
instances labelled from the finished mask.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxseg.config import PredictConfig
from voxseg.data.discovery import TIFF_SUFFIXES
from voxseg.errors import ConfigError, DataError
from voxseg.io.tiff import TiffVolume, planes_writer, voxel_size

log = logging.getLogger("voxseg")

Progress = Callable[[str, int, int], None]  # (volume name, windows done, windows in the volume)


@dataclass(frozen=True)
class PredictionFiles:
    """What was written for one input volume."""

    image: Path
    mask: Path
    labels: Path | None
    objects: Path | None
    probabilities: Path | None
    objects_found: int | None
    voxels: int
    seconds: float


def input_files(paths: tuple[Path, ...]) -> list[Path]:
    """The TIFF files named, folders expanded (sorted); a missing path or an empty folder is an error."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and _is_input(p))
            if not found:
                raise DataError(f"--input: no .tif/.tiff files in {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"--input: {path} does not exist")
    stems = [_stem(f) for f in files]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise DataError(f"--input: several inputs are named {', '.join(twice)}; their outputs would collide")
    return files


#: what voxseg predict writes: never taken as input when a folder is both (its outputs are skipped)
OUTPUT_SUFFIXES = ("_mask", "_labels", "_prob")


def _is_input(path: Path) -> bool:
    return (
        path.suffix.lower() in TIFF_SUFFIXES
        and not path.name.startswith(".")
        and not _stem(path).endswith(OUTPUT_SUFFIXES)
    )


def _stem(path: Path) -> str:
    return path.name[: -len(path.suffix)] if path.suffix.lower() in TIFF_SUFFIXES else path.name


def output_paths(config: PredictConfig, image: Path) -> dict[str, Path]:
    """The files predicting `image` writes, by kind."""
    assert config.output is not None
    stem = _stem(image)
    paths = {"mask": config.output / f"{stem}_mask.tif"}
    if config.instances != "none":
        paths["labels"] = config.output / f"{stem}_labels.tif"
        paths["objects"] = config.output / f"{stem}_objects.csv"
    if config.save_probabilities:
        paths["probabilities"] = config.output / f"{stem}_prob.tif"
    return paths


def check_outputs(config: PredictConfig, images: list[Path]) -> None:
    """Refuse, before anything is written, to overwrite an output (unless --overwrite)."""
    assert config.output is not None
    if config.output.exists() and not config.output.is_dir():
        raise ConfigError(f"--output: {config.output} exists and is not a folder")
    if config.overwrite:
        return
    existing = [p for image in images for p in output_paths(config, image).values() if p.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise DataError(f"--output: {existing[0]} already exists{more}; give --overwrite to replace")


def predict_files(config: PredictConfig, progress: Progress | None = None) -> list[PredictionFiles]:
    """Predict every input of a resolved config; return what was written for each."""
    from voxseg.accel import accelerated
    from voxseg.inference.trained import load_trained_model, window_predictor
    from voxseg.training.hardware import resolve_device
    from voxseg.training.precision import autocast, resolve_precision

    images = input_files(config.input)
    for image in images:  # shape and type, before the model loads (headers only for mapped files)
        TiffVolume(image)
    check_outputs(config, images)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    trained = load_trained_model(config)
    log.info(
        "threshold %.3f (%s), overlap %g, %s, precision %s on %s",
        trained.threshold,
        trained.threshold_from,
        config.overlap,
        "test-time augmentation (8 flips)" if config.tta else "no test-time augmentation",
        precision.name,
        device,
    )
    assert config.output is not None
    config.output.mkdir(parents=True, exist_ok=True)
    results = []
    with accelerated(device, config.fast_kernels, compile=False) as acceleration:
        model = trained.model.to(device)
        runner = acceleration.tune(model, mixed_precision=precision.dtype is not None)
        predict = window_predictor(runner, device, lambda: autocast(device, precision), config.tta)
        for image in images:
            results.append(_predict_one(config, image, trained.window, trained.threshold, predict, progress))
    return results


def _predict_one(config, image: Path, window, threshold: float, predict, progress) -> PredictionFiles:
    from voxseg.inference.streaming import Normalisation, streamed_probabilities

    started = time.perf_counter()
    volume = TiffVolume(image)
    if not volume.mapped:
        log.info("%s: read whole (compressed or tiled TIFF: it cannot be mapped from disk)", image.name)
    paths = output_paths(config, image)
    normalisation = Normalisation.of(volume)
    report = (lambda done, total: progress(image.name, done, total)) if progress else None
    with contextlib.ExitStack() as scratch:
        # instances use the probabilities (watershed seeds, mean probability per object): kept in a
        # temporary file beside the outputs when they are not asked for
        probability_path = paths.get("probabilities")
        if probability_path is None and config.instances != "none":
            folder = scratch.enter_context(tempfile.TemporaryDirectory(dir=config.output, prefix=".voxseg-"))
            probability_path = Path(folder) / "probability.tif"
        with (
            planes_writer(paths["mask"], volume.shape, np.uint8, config.overwrite) as mask,
            _maybe_writer(probability_path, volume.shape, config.overwrite) as probabilities,
        ):
            for z, planes in streamed_probabilities(
                volume, normalisation, window, config.overlap, predict, config.batch_size, report
            ):
                mask[z : z + planes.shape[0]] = planes >= threshold  # as the threshold was tuned
                if probabilities is not None:
                    probabilities[z : z + planes.shape[0]] = planes
        found = None
        if config.instances != "none":
            found = _write_instances(config, image, paths, probability_path)
    seconds = time.perf_counter() - started
    log.info(
        "%s: %s voxels in %.1f s (%s voxels/s)%s",
        image.name,
        f"{volume.size:,}",
        seconds,
        f"{volume.size / seconds:,.0f}",
        "" if found is None else f", {found} objects",
    )
    return PredictionFiles(
        image,
        paths["mask"],
        paths.get("labels"),
        paths.get("objects"),
        paths.get("probabilities"),
        found,
        int(volume.size),
        seconds,
    )


def _maybe_writer(path: Path | None, shape, overwrite: bool):
    return planes_writer(path, shape, np.float32, overwrite) if path is not None else contextlib.nullcontext()


def _write_instances(
    config: PredictConfig, image: Path, paths: dict[str, Path], probability: Path | None
) -> int:
    """Label the finished mask slab by slab (bounded memory, ids stitched across slabs); list the objects."""
    from voxseg.inference.instances import write_object_csv
    from voxseg.inference.slab_instances import label_in_slabs

    rows = label_in_slabs(
        paths["mask"],
        paths["labels"],
        config.instances,
        probability,
        config.spacing or voxel_size(image),
        config.min_size,
        config.max_size,
        config.overwrite,
    )
    write_object_csv(paths["objects"], rows)  # checked before anything was written (check_outputs)
    return len(rows)
