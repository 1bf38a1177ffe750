"""`voxseg predict`: apply a trained model to 3D volumes of any size (TIFF, Zarr, HDF5).

Every input is checked, and every output name is checked for an existing file, before the model
is loaded or anything is written. Each volume is then read window by window (`voxseg.io`,
`sliding`), its mask (and probabilities) written plane by plane in the input's format with its
voxel size, and its instances labelled from the finished mask.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from voxseg.config import PredictConfig
from voxseg.errors import ConfigError, DataError
from voxseg.inference.paths import OUTPUT_SUFFIXES, earlier_outputs, open_input, output_name, output_paths
from voxseg.io.formats import DESCRIPTION, family, is_volume, stem

if TYPE_CHECKING:  # torch loads only when a model does
    from voxseg.inference.job.volume import VolumeWork
    from voxseg.runtime.distributed import Parallel

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


def _is_input(path: Path) -> bool:
    return is_volume(path) and not stem(path).endswith(tuple(OUTPUT_SUFFIXES.values()))


def check_outputs(config: PredictConfig, images: list[Path]) -> None:
    """Refuse, before anything is written, to replace an earlier prediction's outputs (unless
    --overwrite, or --resume: a stopped prediction's outputs are its own)."""
    assert config.output is not None
    if config.output.exists() and not config.output.is_dir():
        raise ConfigError(f"--output: {config.output} exists and is not a folder")
    if config.overwrite or config.resume:
        return
    existing = earlier_outputs(config.output, [output_name(config, image) for image in images])
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise DataError(
            f"--output: {existing[0]} already exists{more}; give --overwrite to replace an earlier "
            "prediction (its outputs this one does not write are removed), or another --output"
        )


def predict_files(
    config: PredictConfig,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    parallel: Parallel | None = None,
) -> list[PredictionFiles]:
    """Predict every input of a resolved config; return what was written for each. Once `stop` is
    set, `voxseg.errors.Stopped` is raised before the next batch of windows (the volume in progress
    keeps its finished blocks for `--resume`; the volumes finished are in place).

    Under torchrun (`parallel`), the ranks share the work: each volume's blocks when there are fewer
    volumes than ranks, else whole volumes, dealt largest first. Every rank returns the whole list.
    """
    from voxseg.accel.cuda import heuristic_kernels
    from voxseg.data.checks import check_volume_values
    from voxseg.inference.job.volume import describe_work, predict_volume
    from voxseg.inference.model.instances import resolve_method
    from voxseg.inference.model.predictor import Predictor
    from voxseg.inference.model.sliding import foreground_only
    from voxseg.inference.model.trained import check_source, isotropic_side, run_outputs
    from voxseg.runtime.distributed import Parallel

    parallel = parallel or Parallel()
    if config.instances != "none":  # `auto` resolved first: the outputs written depend on it
        config = replace(config, instances=resolve_method(config.instances, run_outputs(config)))
    images = input_files(config.input)
    isotropic = isotropic_side(check_source(config.source, config.model)[3])
    for image in images:  # before the model loads: headers, then the values of float volumes
        volume = open_input(config, image)
        if isotropic is not None and (config.spacing or volume.voxel_size) is None:
            raise DataError(
                f"{image}: has no voxel size in its metadata, and the run trained on isotropic "
                f"{isotropic:g} µm voxels (--resample isotropic); give --spacing Z,Y,X"
            )
        check_volume_values(volume, parallel.rank, parallel.world)
        if config.instances != "none" and (config.spacing or volume.voxel_size) is None and parallel.is_main:
            log.warning(
                "%s: no voxel size in its metadata: the µm columns of %s_objects.csv stay empty and the "
                "watershed measures in voxels; give --spacing Z,Y,X",
                image.name,
                output_name(config, image),
            )
    todo = parallel.decided_by_main(lambda: unfinished(config, images))
    shared = parallel.active and len(todo) < parallel.world and isotropic is None
    if shared:
        check_shared_format(config, todo, parallel)
    predictor = Predictor.of(replace(config, device=parallel.device_name(config.device)))
    assert config.output is not None
    config.output.mkdir(parents=True, exist_ok=True)
    mine = (
        [(image, parallel) for image in todo]
        if shared
        else [(image, Parallel()) for image in deal(config, todo, parallel)]
    )
    written: list[PredictionFiles] = []
    done: list[VolumeWork] = []
    started = time.perf_counter()
    # cuDNN's kernels chosen by heuristics, not timed per process: every rank, and a resumed job, then
    # computes a window with the same kernels, so their blocks are one process's bit for bit
    with predictor.windows() as predict, heuristic_kernels():
        if config.instances != "distance":
            predict = foreground_only(predict)
        for image, group in mine:
            paths = output_paths(config, image)
            report = (lambda done, total, name=image.name: progress(name, done, total)) if progress else None
            work, found = predict_volume(
                config, image, paths, predictor, predict, group, report if parallel.is_main else None, stop
            )
            done.append(work)
            if group.is_main:
                written.append(_written(image, paths, found, work))
    ranks = parallel.gather(describe_work(parallel.rank, done, time.perf_counter() - started))
    if parallel.active and parallel.is_main:
        for line in ranks:
            log.info(line)
    every = [files for part in parallel.gather(written) for files in part]
    return sorted(every, key=lambda files: images.index(files.image))


def unfinished(config: PredictConfig, images: list[Path]) -> list[Path]:
    """The inputs to predict: all of them, except under `--resume` those whose outputs are in place and
    whose prediction left no journal. Existing outputs are refused (unless `--overwrite`), and so is a
    stopped prediction's journal (unless `--resume` or `--overwrite`), before anything is written."""
    from voxseg.inference.job.journal import Journal, refuse_unfinished
    from voxseg.inference.job.volume import settings_fingerprint

    assert config.output is not None
    todo = []
    for image in images:
        journal = Journal.of(config.output, output_name(config, image))
        if config.resume and journal.started:  # other options: refused before the model loads
            volume = open_input(config, image)
            journal.check_same(settings_fingerprint(config, image, volume), partial=True)
        outputs = output_paths(config, image).values()
        if config.resume and not journal.started and all(p.exists() for p in outputs):
            log.info("%s: predicted already (--resume)", image.name)
            continue
        if not (config.resume or config.overwrite):
            refuse_unfinished(journal, image)
        todo.append(image)
    check_outputs(config, todo)
    return todo


def check_shared_format(config: PredictConfig, images: list[Path], parallel: Parallel) -> None:
    """Ranks sharing a volume write its chunks (Zarr) or planes (TIFF, on one machine) side by side;
    HDF5 has one writer at a time, and a TIFF written from several machines is not safe on every
    shared filesystem."""
    assert config.output is not None
    for image in images:
        kind = family(output_paths(config, image)["mask"])
        if kind == "hdf5" or (kind == "tiff" and not parallel.one_node):
            where = "processes" if kind == "hdf5" else "machines"
            raise ConfigError(
                f"{image.name}: {parallel.world} {where} cannot write one {DESCRIPTION_OF[kind]} output "
                f"together; give --output-format zarr (OME-Zarr), or at least {parallel.world} inputs "
                "(each rank then predicts whole volumes)"
            )


#: the output formats by name, for messages
DESCRIPTION_OF = {"tiff": "TIFF", "zarr": "OME-Zarr", "hdf5": "HDF5"}


def deal(config: PredictConfig, images: list[Path], parallel: Parallel) -> list[Path]:
    """This rank's whole volumes: the largest first to the rank with the fewest voxels so far."""
    sizes = {image: open_input(config, image).size for image in images}
    load = [0] * parallel.world
    mine = []
    for image in sorted(images, key=lambda i: -sizes[i]):
        rank = load.index(min(load))
        load[rank] += sizes[image]
        if rank == parallel.rank:
            mine.append(image)
    return mine


def _written(image: Path, paths: dict[str, Path], found: int | None, work: VolumeWork) -> PredictionFiles:
    voxels, seconds = work.voxels, work.seconds
    log.info(
        "%s: %s voxels in %.1f s (%s voxels/s; windows %.1f s, instances %.1f s)%s",
        image.name,
        f"{voxels:,}",
        seconds,
        f"{voxels / seconds:,.0f}",
        work.window_seconds,
        work.instance_seconds,
        "" if found is None else f", {found} objects",
    )
    return PredictionFiles(
        image,
        paths["mask"],
        paths.get("labels"),
        paths.get("objects"),
        paths.get("probabilities"),
        found,
        voxels,
        seconds,
    )
