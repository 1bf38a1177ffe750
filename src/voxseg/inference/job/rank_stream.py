"""One rank's windows of a volume: its regions streamed from the volume's window grid, their planes
thresholded and written, each unit recorded in the journal once its last plane is written, and the
stream's state saved after rows, so a stopped job continues from there."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import numpy as np

from voxseg.config import PredictConfig
from voxseg.inference.job.blocks import VolumePlan
from voxseg.inference.job.journal import Journal, WorkArrays, crc
from voxseg.inference.job.shares import Grid, Restart, stream_regions
from voxseg.io.writers import planes_of

if TYPE_CHECKING:
    from voxseg.inference.model.predictor import Predictor
    from voxseg.inference.model.sliding import Predict, RingState

#: the share of a stream's time that saving its state after rows may take
CHECKPOINT_SHARE = 0.1


class RankStream:
    """This rank's windows of one volume: its regions streamed, written and recorded unit by unit,
    the stream's state saved after rows (`_UnitRecorder.checkpoint`)."""

    def __init__(
        self,
        config: PredictConfig,
        volume: Any,
        spacing: tuple[float, float, float] | None,
        predictor: Predictor,
        predict: Predict,
        plan: VolumePlan,
        journal: Journal,
        work: WorkArrays,
        normalisation: tuple[float, ...],
    ) -> None:
        from voxseg.data.normalise import Normalisation
        from voxseg.inference.model.sliding import window_rows

        self.config, self.volume, self.spacing = config, volume, spacing
        self.predictor, self.predict = predictor, predict
        self.plan, self.journal, self.work = plan, journal, work
        self.normalisation = Normalisation(*normalisation)
        window = predictor.trained.window
        _, before, self.rows = window_rows(tuple(volume.shape), window, config.overlap)
        self.grid = Grid(list(self.rows), window[0], before[0])

    def windows_in(self, row: int) -> int:
        return len(self.rows[row])

    def compute(self, wanted: list[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
        from voxseg.inference.model.sliding import window_outputs

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

    def run(
        self,
        mine: list[int],
        restarts: dict[int, Restart],
        computed: dict[tuple[int, int], np.ndarray],
        rank: int,
        report: Callable[[int, int], None] | None,
        stop: threading.Event | None,
    ) -> None:
        """Stream, write and record the units `mine`, continuing stopped streams from `restarts`."""
        seen = {"before": 0, "now": 0}  # windows of the regions streamed before, and of this one

        def windows_done(done: int, total: int) -> None:
            seen["now"] = done
            if report is not None:
                report(seen["before"] + done, seen["before"] + total)

        work, journal, threshold = self.work, self.journal, self.predictor.threshold
        with ExitStack() as stack:
            outputs = {name: stack.enter_context(planes_of(journal / name)) for name in work.streamed}
            for (z0, z1), units, restart in stream_regions(self.plan.units, mine, restarts):
                recorder = _UnitRecorder(self.plan, journal, units, rank, restart)
                resume_from = None if restart is None else _restored(journal, restart)
                if restart is not None:
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
                for z, planes in stream:  # (C, n, Y, X): the foreground, then the distance
                    values = {work.thresholded: (planes[0] >= threshold).view(np.uint8)}
                    if work.probability:
                        values[work.probability] = planes[0]
                    if work.distance:
                        values[work.distance] = planes[1]
                    for name, planes_out in values.items():
                        outputs[name][z : z + planes.shape[1]] = planes_out
                    recorder.add(z, values)
                seen["before"] += seen["now"]
                seen["now"] = 0


def _restored(journal: Journal, restart: Restart) -> RingState:
    """The state a stopped stream saved (`_UnitRecorder.checkpoint`)."""
    from voxseg.inference.model.sliding import RingState

    saved = journal.arrays("progress", restart.unit)
    parts = sorted(saved, key=lambda name: int(name[1:]))  # v0, w0, v1, w1: the ring's parts in order
    values = [saved[name] for name in parts if name[0] == "v"]
    weights = [saved[name] for name in parts if name[0] == "w"]
    return RingState(restart.next_row, restart.final, values, weights)


def counted(predict: Predict) -> tuple[Predict, list[int]]:
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
        arrays = {f"v{i}": part for i, part in enumerate(state.values)}
        arrays.update({f"w{i}": part for i, part in enumerate(state.weights)})
        self.journal.record("progress", unit, record, arrays)
        self.saved_at = time.perf_counter()
        self.save_seconds = self.saved_at - started
