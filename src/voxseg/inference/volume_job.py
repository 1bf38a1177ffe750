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
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxseg.config import PredictConfig
from voxseg.inference.blocks import VolumePlan, share
from voxseg.inference.journal import Journal, WorkArrays, crc
from voxseg.inference.shares import Grid, Restart, balanced_shares, shared_windows, stream_regions
from voxseg.io.formats import OUTPUT_SUFFIX, family, open_volume, stem
from voxseg.io.writers import create_volume, planes_of, replace_path
from voxseg.runtime.files import sha256

if TYPE_CHECKING:
    from voxseg.inference.segmenter import Predictor
    from voxseg.inference.sliding import Predict
    from voxseg.runtime.distributed import Parallel

log = logging.getLogger("voxseg")

#: the share of a stream's time that saving its state after rows may take
CHECKPOINT_SHARE = 0.1


@dataclass(frozen=True)
class VolumeWork:
    """What this rank did for one volume (the job's summary adds them up)."""

    units: int
    windows: int
    seconds: float
    voxels: int
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
    volume = open_volume(image, config.image_key, config.level, config.channel)
    spacing = config.spacing or volume.voxel_size
    plan = VolumePlan.of(volume.shape)
    journal = Journal.of(config.output, stem(image))
    work = work_arrays(config, paths)
    pending, restarts, normalisation = parallel.decided_by_main(
        lambda: _open_journal(config, image, volume, predictor, plan, journal, work, spacing)
    )
    if normalisation is None:
        normalisation = _normalisation(volume, parallel)
        if parallel.is_main:
            journal.note(normalisation=normalisation)
    streaming = time.perf_counter()
    predict, windows = _counted(predict)
    stream = _Stream(config, volume, spacing, predictor, predict, plan, journal, work, normalisation)
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
        from voxseg.inference.block_instances import InstanceOptions, label_slabs
        from voxseg.inference.instances import table_row, write_object_csv

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
            write_object_csv(paths["objects"], [table_row(row, spacing) for row in rows])
            found = len(rows)
    labelled = time.perf_counter()
    if parallel.is_main:
        _finish(journal, work, paths)
    parallel.barrier()
    seconds = time.perf_counter() - started
    return VolumeWork(
        len(mine), windows[0], seconds, volume.size, streamed - streaming, labelled - streamed
    ), found


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
    )


def fingerprint(config: PredictConfig, image: Path, volume: Any, predictor: Predictor, spacing, plan) -> dict:
    """Every setting a block's bytes depend on (not the number of ranks, threads or the batch size)."""
    trained = predictor.trained
    return {
        "input": str(image.resolve()),
        "shape": list(volume.shape),
        "dtype": str(volume.dtype),
        "image_key": config.image_key,
        "level": config.level,
        "channel": config.channel,
        "weights": sha256(trained.weights),
        "window": list(trained.window),
        "threshold": predictor.threshold,
        "foreground_class": config.foreground_class,
        "overlap": config.overlap,
        "tta": config.tta,
        "precision": predictor.precision.name,
        "device": predictor.device.type,
        "instances": config.instances,
        "min_size": config.min_size,
        "max_size": config.max_size,
        "min_relative_size": config.min_relative_size,
        "spacing": None if spacing is None else list(spacing),
        "save_probabilities": config.save_probabilities,
        "unit_planes": plan.unit_planes,
        "slab_units": plan.slab_units,
    }


def _open_journal(config, image, volume, predictor, plan, journal, work, spacing):
    """(the units to compute, where stopped streams can continue, the normalisation when a stopped
    job recorded it)."""
    marks = fingerprint(config, image, volume, predictor, spacing, plan)
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
    journal.begin({"fingerprint": marks, "units": plan.units})
    for name in work.streamed:
        dtype = np.float32 if name == work.probability else np.uint8
        create_volume(journal / name, plan.shape, dtype, spacing, plan.chunks)
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


class _Stream:
    """This rank's windows of one volume: its regions streamed, written and recorded unit by unit,
    with a checkpoint after every row of windows."""

    def __init__(self, config, volume, spacing, predictor, predict, plan, journal, work, normalisation):
        from voxseg.data.normalise import Normalisation
        from voxseg.inference.sliding import window_rows

        self.config, self.volume, self.spacing, self.predictor, self.predict = (
            config,
            volume,
            spacing,
            predictor,
            predict,
        )
        self.plan, self.journal, self.work = plan, journal, work
        self.normalisation = Normalisation(*normalisation)
        window = predictor.trained.window
        _, before, self.rows = window_rows(tuple(volume.shape), window, config.overlap)
        self.grid = Grid(list(self.rows), window[0], before[0])

    def windows_in(self, row: int) -> int:
        return len(self.rows[row])

    def compute(self, wanted: list[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
        from voxseg.inference.sliding import window_outputs

        trained, config = self.predictor.trained, self.config
        return window_outputs(
            self.volume,
            self.normalisation,
            trained.window,
            config.overlap,
            self.predict,
            config.batch_size,
            wanted,
        )

    def run(self, mine, restarts, computed, rank, report, stop) -> None:
        from voxseg.inference.sliding import RingState

        counted = {"before": 0, "now": 0}

        def windows_done(done: int, total: int) -> None:
            counted["now"] = done
            if report is not None:
                report(counted["before"] + done, counted["before"] + total)

        work, journal, threshold = self.work, self.journal, self.predictor.threshold
        with ExitStack() as stack:
            outputs = {name: stack.enter_context(planes_of(journal / name)) for name in work.streamed}
            for (z0, z1), units, restart in stream_regions(self.plan.units, mine, restarts):
                recorder = _UnitRecorder(self.plan, journal, units, rank, restart)
                resume_from = None
                if restart is not None:
                    ring = journal.arrays("progress", restart.unit)
                    resume_from = RingState(restart.next_row, restart.final, ring["values"], ring["weights"])
                    z0 = restart.final
                stream = self.predictor.probabilities(
                    self.volume,
                    self.spacing,
                    self.predict,
                    windows_done,
                    stop,
                    (z0, z1),
                    self.normalisation,
                    computed,
                    resume_from,
                    lambda state, end=z1, recorder=recorder: recorder.checkpoint(state, end),
                )
                for z, planes in stream:
                    values = {work.thresholded: (planes >= threshold).view(np.uint8)}
                    if work.probability:
                        values[work.probability] = planes
                    for name, planes_out in values.items():
                        outputs[name][z : z + planes.shape[0]] = planes_out
                    recorder.add(z, values)
                counted["before"] += counted["now"]
                counted["now"] = 0


def _counted(predict: Predict) -> tuple[Predict, list[int]]:
    """`predict`, counting the windows it computes (in the list's one item)."""
    windows = [0]

    def counting(tiles):
        windows[0] += len(tiles)
        return predict(tiles)

    return counting, windows


class _UnitRecorder:
    """Records each unit of a region once its last plane is written, with the CRC of every array's
    bytes, accumulated as its planes arrive (no read-back); after each row of windows, the stream's
    state, so that a stopped job continues from there (`Restart`)."""

    def __init__(self, plan: VolumePlan, journal: Journal, units: list[int], rank: int, restart) -> None:
        self.plan, self.journal, self.rank = plan, journal, rank
        self.open: dict[int, dict[str, int]] = {i: {} for i in units}
        self.saved_at, self.save_seconds = float("-inf"), 0.0
        if restart is not None:
            self.open[restart.unit] = dict(restart.crc)

    def add(self, z: int, values: dict[str, np.ndarray]) -> None:
        n = next(iter(values.values())).shape[0]
        for i in list(self.open):
            u0, u1 = self.plan.units[i]
            a, b = max(u0, z), min(u1, z + n)
            if b <= a:
                continue
            sums = self.open[i]
            for name, planes in values.items():
                sums[name] = crc(planes[a - z : b - z], sums.get(name, 0))
            if b == u1:
                self.journal.record("units", i, {"z": [u0, u1], "crc": self.open.pop(i), "rank": self.rank})
                self.journal.forget("progress", i)

    def checkpoint(self, state, end: int) -> None:
        """The stream's state after a row, filed under the unit its next plane belongs to.

        It holds the planes not yet final, twice (sums and weights): 16 MB for a 512² plane and a
        window 32 deep (~20 ms here), 13 GB for a 10k² plane and 64. So a stream saves one only once
        `CHECKPOINT_SHARE`'s inverse times the last save's duration has passed: saving costs at most
        that share of the time, and a stop loses at most a row or that much more."""
        started = time.perf_counter()
        if state.final >= end or started - self.saved_at < self.save_seconds / CHECKPOINT_SHARE:
            return
        unit = next(i for i in self.open if self.plan.units[i][0] <= state.final < self.plan.units[i][1])
        record = {
            "z": [self.plan.units[unit][0], state.final],
            "next_row": state.next_row,
            "crc": self.open[unit],
        }
        self.journal.record("progress", unit, record, {"values": state.values, "weights": state.weights})
        self.saved_at = time.perf_counter()
        self.save_seconds = self.saved_at - started


def _finish(journal: Journal, work: WorkArrays, paths: dict[str, Path]) -> None:
    """Rank 0: the finished outputs moved into place; the journal removed."""
    for kind in ("mask", "labels", "probabilities"):
        if kind in paths:
            replace_path(journal / paths[kind].name, paths[kind])
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
