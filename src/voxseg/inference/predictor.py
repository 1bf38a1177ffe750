"""`voxseg predict`: apply a trained model to 3D volumes of any size (TIFF, Zarr, HDF5).

Every input is checked, and every output name is checked for an existing file, before the model
is loaded or anything is written. Each volume is then read window by window (`voxseg.io`,
`sliding`), its mask (and probabilities) written plane by plane in the input's format with its
voxel size, and its instances labelled from the finished mask.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voxseg.config import PredictConfig
from voxseg.errors import ConfigError, DataError
from voxseg.io.formats import DESCRIPTION, OUTPUT_SUFFIX, family, is_volume, open_volume, stem
from voxseg.io.writers import volume_writer

if TYPE_CHECKING:  # torch loads only when a model does
    from voxseg.inference.segmenter import Predictor

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
    """The volumes named, folders expanded (sorted); a missing path or an empty folder is an error."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir() and family(path) != "zarr":
            found = sorted(p for p in path.iterdir() if _is_input(p))
            if not found:
                raise DataError(f"--input: no volumes ({DESCRIPTION}) in {path}")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise DataError(f"--input: {path} does not exist")
    stems = [stem(f) for f in files]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise DataError(f"--input: several inputs are named {', '.join(twice)}; their outputs would collide")
    return files


#: what voxseg predict writes, `<name><suffix>` by kind, declared once (evaluate and the napari reader
#: read them back); never taken as input when a folder is both (its outputs are skipped)
OUTPUT_SUFFIXES = {"mask": "_mask", "labels": "_labels", "probabilities": "_prob"}


def _is_input(path: Path) -> bool:
    return is_volume(path) and not stem(path).endswith(tuple(OUTPUT_SUFFIXES.values()))


def output_paths(config: PredictConfig, image: Path) -> dict[str, Path]:
    """The files predicting `image` writes, by kind."""
    assert config.output is not None
    name = stem(image)
    written_as = family(image) if config.output_format == "auto" else config.output_format
    suffix = OUTPUT_SUFFIX[written_as or "tiff"]  # type: ignore[index]
    kinds = ["mask"]
    if config.instances != "none":
        kinds.append("labels")
    if config.save_probabilities:
        kinds.append("probabilities")
    paths = {kind: config.output / f"{name}{OUTPUT_SUFFIXES[kind]}{suffix}" for kind in kinds}
    if config.instances != "none":
        paths["objects"] = config.output / f"{name}_objects.csv"
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


def predict_files(
    config: PredictConfig, progress: Progress | None = None, stop: threading.Event | None = None
) -> list[PredictionFiles]:
    """Predict every input of a resolved config; return what was written for each. Once `stop` is
    set, `voxseg.errors.Stopped` is raised before the next batch of windows (the volume in progress
    leaves no file; those finished are kept)."""
    from voxseg.data.checks import check_volume_values
    from voxseg.inference.segmenter import Predictor
    from voxseg.inference.trained import check_source, isotropic_side

    images = input_files(config.input)
    isotropic = isotropic_side(check_source(config.source, config.model)[3])
    for image in images:  # before the model loads: headers, then the values of float volumes
        volume = open_volume(image, config.image_key, config.level, config.channel)
        if isotropic is not None and (config.spacing or volume.voxel_size) is None:
            raise DataError(
                f"{image}: has no voxel size in its metadata, and the run trained on isotropic "
                f"{isotropic:g} µm voxels (--resample isotropic); give --spacing Z,Y,X"
            )
        check_volume_values(volume)
    check_outputs(config, images)
    predictor = Predictor.of(config)
    assert config.output is not None
    config.output.mkdir(parents=True, exist_ok=True)
    with predictor.windows() as predict:
        return [_predict_one(config, image, predictor, predict, progress, stop) for image in images]


def _predict_one(config, image: Path, predictor: Predictor, predict, progress, stop) -> PredictionFiles:
    started = time.perf_counter()
    volume = open_volume(image, config.image_key, config.level, config.channel)
    if not volume.lazy:
        log.info("%s: read whole (compressed or tiled TIFF: it cannot be mapped from disk)", image.name)
    spacing = config.spacing or volume.voxel_size
    paths = output_paths(config, image)
    report = (lambda done, total: progress(image.name, done, total)) if progress else None
    with contextlib.ExitStack() as scratch:
        # instances use the probabilities (watershed seeds, mean probability per object): kept in a
        # temporary file beside the outputs when they are not asked for
        probability_path = paths.get("probabilities")
        if probability_path is None and config.instances != "none":
            folder = scratch.enter_context(tempfile.TemporaryDirectory(dir=config.output, prefix=".voxseg-"))
            probability_path = Path(folder) / "probability.tif"
        with (
            volume_writer(paths["mask"], volume.shape, np.uint8, config.overwrite, spacing) as mask,
            _maybe_writer(probability_path, volume.shape, config.overwrite, spacing) as probabilities,
        ):
            for z, planes in predictor.probabilities(volume, spacing, predict, report, stop):
                mask[z : z + planes.shape[0]] = planes >= predictor.threshold  # as the threshold was tuned
                if probabilities is not None:
                    probabilities[z : z + planes.shape[0]] = planes
        found = None
        if config.instances != "none":
            radius = predictor.object_radius(spacing)
            found = _write_instances(config, paths, probability_path, spacing, radius)
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


def _maybe_writer(path: Path | None, shape, overwrite: bool, spacing):
    if path is None:
        return contextlib.nullcontext()
    return volume_writer(path, shape, np.float32, overwrite, spacing)


def _write_instances(
    config: PredictConfig, paths: dict[str, Path], probability: Path | None, spacing, object_radius
) -> int:
    """Label the finished mask slab by slab (bounded memory, ids stitched across slabs); list the objects."""
    from voxseg.inference.instances import watershed_scale, write_object_csv
    from voxseg.inference.slab_instances import label_in_slabs

    if object_radius is not None:
        h, smoothing = watershed_scale(object_radius)
        log.info(
            "instances: watershed scaled to the run's typical object radius %.3g %s (h %.3g, smoothing %.3g)",
            object_radius,
            "voxels" if spacing is None else "µm",
            h,
            smoothing,
        )
    rows = label_in_slabs(
        paths["mask"],
        paths["labels"],
        config.instances,
        probability,
        spacing,
        config.min_size,
        config.max_size,
        config.overwrite,
        config.min_relative_size,
        object_radius,
    )
    write_object_csv(paths["objects"], rows)  # checked before anything was written (check_outputs)
    return len(rows)
