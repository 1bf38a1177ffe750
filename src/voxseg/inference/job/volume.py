"""One volume predicted block by block, by one process or shared by the ranks of a torchrun job, and
resumable: the work of `voxseg predict` for each input.

Rank 0 opens the journal (a new plan, or the plan of a stopped job, checked against the settings),
computes the volume's normalisation once and creates the output arrays. Each rank then streams the
windows of its share of the pending units (`inference.blocks`) from the volume's global window grid,
so its planes are bit for bit one process's, and writes their mask (and probability) chunk rows,
recording each finished unit. The instances follow (`block_instances`), then rank 0 moves the
outputs into place and removes the journal.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxseg.config import PredictConfig
from voxseg.inference.job.blocks import VolumePlan, share
from voxseg.inference.job.journal import VERSION as JOURNAL_VERSION
from voxseg.inference.job.journal import Journal, WorkArrays
from voxseg.inference.job.rank_stream import RankStream, counted
from voxseg.inference.job.shares import Restart, balanced_shares, shared_windows
from voxseg.inference.paths import earlier_outputs, open_input, output_name
from voxseg.inference.provenance import prediction_stamp
from voxseg.io.formats import OUTPUT_SUFFIX, family
from voxseg.io.writers import create_volume, replace_path
from voxseg.runtime.files import sha256

if TYPE_CHECKING:
    from voxseg.inference.model.predictor import Predictor
    from voxseg.inference.model.sliding import Predict
    from voxseg.runtime.distributed import Parallel

log = logging.getLogger("voxseg")


@dataclass(frozen=True)
class VolumeWork:
    """What this rank did for one volume (the job's summary adds them up)."""

    units: int
    windows: int
    seconds: float
    voxels: int  # predicted by this job (a resumed one: not those of the blocks done before it stopped)
    window_seconds: float  # streaming this rank's units
    instance_seconds: float  # the instances' phases, waits included


def predict_volume(
    config: PredictConfig,
    image: Path,
    paths: dict[str, Path],
    predictor: Predictor,
    predict: Predict,
    parallel: Parallel,
    report: Callable[[int, int], None] | None,
    stop: threading.Event | None,
) -> tuple[VolumeWork, int | None]:
    """Predict `image` into `paths` (`output_paths`) with the ranks of `parallel`; return this rank's
    work and, on rank 0, the number of objects found (None without instances)."""
    started = time.perf_counter()
    volume = open_input(config, image)
    spacing = config.spacing or volume.voxel_size
    plan = VolumePlan.of(volume.shape)
    journal = Journal.of(config.output, output_name(config, image))
    work = work_arrays(config, paths)
    pending, restarts, normalisation = parallel.decided_by_main(
        lambda: _open_journal(config, image, volume, predictor, plan, journal, work, spacing)
    )
    if normalisation is None:
        normalisation = _normalisation(volume, parallel)
        if parallel.is_main:
            journal.note(normalisation=normalisation)
    streaming = time.perf_counter()
    predict, windows = counted(predict)
    stream = RankStream(config, volume, spacing, predictor, predict, plan, journal, work, normalisation)
    shares = balanced_shares(plan.units, pending, restarts, stream.grid, parallel.world)
    mine = shares[parallel.rank]
    computed = shared_windows(
        shares,
        plan.units,
        restarts,
        stream.grid,
        stream.windows_in,
        parallel.rank,
        stream.compute,
        parallel.gather,
        journal,
    )
    stream.run(mine, restarts, computed, parallel.rank, report, stop)
    streamed = time.perf_counter()
    parallel.barrier()
    found = None
    if config.instances != "none":
        from voxseg.inference.job.block_instances import InstanceOptions, label_slabs
        from voxseg.inference.model.instances import table_row, write_object_csv

        options = InstanceOptions(
            config.instances,
            config.min_size,
            config.max_size,
            config.min_relative_size,
            spacing,
            predictor.object_radius(spacing),
        )
        rows = label_slabs(options, plan, journal, work, parallel, stop)
        if parallel.is_main:
            write_object_csv(paths["objects"], [table_row(row, spacing) for row in rows], journal.stamp())
            found = len(rows)
    labelled = time.perf_counter()
    if parallel.is_main:
        _finish(journal, paths, output_name(config, image))
    parallel.barrier()
    seconds = time.perf_counter() - started
    planes = sum(plan.units[i][1] - plan.units[i][0] for i in pending)  # a resumed job's own work only
    voxels = planes * volume.shape[1] * volume.shape[2]
    done = VolumeWork(len(mine), windows[0], seconds, voxels, streamed - streaming, labelled - streamed)
    return done, found


def work_arrays(config: PredictConfig, paths: dict[str, Path]) -> WorkArrays:
    """The partial folder's arrays for these outputs (named as the outputs they become)."""
    suffix = OUTPUT_SUFFIX[family(paths["mask"])]  # type: ignore[index]
    instances = config.instances != "none"
    probability = paths["probabilities"].name if "probabilities" in paths else None
    if instances and probability is None:
        probability = f"probability{suffix}"
    return WorkArrays(
        mask=paths["mask"].name,
        thresholded=f"thresholded{suffix}" if instances else paths["mask"].name,
        probability=probability,
        local=f"local{suffix}" if instances else None,
        labels=paths["labels"].name if instances else None,
        distance=paths["distance"].name if "distance" in paths else None,
    )


def settings_fingerprint(config: PredictConfig, image: Path, volume: Any) -> dict:
    """The part of `fingerprint` known before the model loads: a resume with other options is refused
    before the model's load and tuning are spent on it."""
    spacing = config.spacing or volume.voxel_size
    return {
        "journal": JOURNAL_VERSION,
        "input": str(image.resolve()),
        "shape": list(volume.shape),
        "dtype": str(volume.dtype),
        "image_key": config.image_key,
        "level": config.level,
        "channel": config.channel,
        "timepoint": config.timepoint,
        "series": config.series,
        "foreground_class": config.foreground_class,
        "overlap": config.overlap,
        "tta": config.tta,
        "instances": config.instances,
        "min_size": config.min_size,
        "max_size": config.max_size,
        "min_relative_size": config.min_relative_size,
        "spacing": None if spacing is None else list(spacing),
        "save_probabilities": config.save_probabilities,
    }


def fingerprint(config: PredictConfig, image: Path, volume: Any, predictor: Predictor, plan) -> dict:
    """Every setting a block's bytes depend on (not the number of ranks, threads or the batch size)."""
    trained = predictor.trained
    return {
        **settings_fingerprint(config, image, volume),
        "weights": sha256(trained.weights),
        "window": list(trained.window),
        "threshold": predictor.threshold,
        "precision": predictor.precision.name,
        "device": predictor.device.type,
        "unit_planes": plan.unit_planes,
        "slab_units": plan.slab_units,
    }


def _open_journal(config, image, volume, predictor, plan, journal, work, spacing):
    """(the units to compute, where stopped streams can continue, the normalisation when a stopped
    job recorded it)."""
    marks = fingerprint(config, image, volume, predictor, plan)
    if journal.started and config.resume:
        journal.check_same(marks)
        done = journal.verified("units")
        pending = [i for i in range(len(plan.units)) if i not in done]
        restarts = {
            i: Restart(i, record["z"][1], record["next_row"], record["crc"])
            for i, record in journal.verified("progress").items()
            if i in pending
        }
        log.info(
            "%s: resuming, %d of %d units done and verified, %d continued where they stopped",
            image.name,
            len(done),
            len(plan.units),
            len(restarts),
        )
        normalisation = journal.plan().get("normalisation")
        return pending, restarts, normalisation and tuple(normalisation)
    stamp = prediction_stamp(marks, config.source)
    journal.begin({"fingerprint": marks, "stamp": stamp, "units": plan.units})
    for name in work.streamed:
        dtype = np.float32 if name in (work.probability, work.distance) else np.uint8
        create_volume(journal / name, plan.shape, dtype, spacing, plan.chunks, provenance=stamp)
    if work.local is not None:
        create_volume(journal / work.local, plan.shape, np.uint32, spacing, plan.chunks)
    return list(range(len(plan.units))), {}, None


def _normalisation(volume: Any, parallel: Parallel) -> tuple[float, ...]:
    """The volume's normalisation, its sample read by all ranks in parts: one process's statistics."""
    from voxseg.data.normalise import Normalisation, sample_planes, sample_stride

    stride = sample_stride(volume)
    planes = share(list(range(0, volume.shape[0], stride)), parallel.rank, parallel.world)
    sample = np.concatenate(parallel.gather(sample_planes(volume, planes, stride)))
    return dataclasses.astuple(Normalisation.of_sample(sample))


def _finish(journal: Journal, paths: dict[str, Path], name: str) -> None:
    """Rank 0: the finished outputs moved into place, an earlier prediction's other outputs removed (no
    mask of this one beside labels of that one), the journal removed."""
    for kind in ("mask", "labels", "probabilities", "distance"):
        if kind in paths:
            replace_path(journal / paths[kind].name, paths[kind])
    stale = [path for path in earlier_outputs(paths["mask"].parent, [name]) if path not in paths.values()]
    for path in stale:
        if path.is_dir():  # a Zarr
            shutil.rmtree(path)
        else:
            path.unlink()
    if stale:
        log.info("%s: removed %s, of an earlier prediction", name, ", ".join(path.name for path in stale))
    journal.remove()


def describe_work(rank: int, work: list[VolumeWork], seconds: float) -> str:
    """One rank's line in the job's summary."""
    units, windows = sum(w.units for w in work), sum(w.windows for w in work)
    streaming, instances = sum(w.window_seconds for w in work), sum(w.instance_seconds for w in work)
    line = (
        f"rank {rank}: {units} units, {windows} windows in {streaming:.1f} s, instances {instances:.1f} s, "
        f"{seconds:.1f} s in all"
    )
    try:
        import resource  # not on Windows
    except ImportError:
        return line
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return f"{line}, peak memory {peak:,.0f} MB"
