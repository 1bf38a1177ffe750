"""`voxseg.train()` and `voxseg.predict()` from Python, with Ctrl-C handling and an optional console.

The glue between the core (`TrainingSession`, the predictor) and a person at a terminal or in a
notebook; the command line uses it too.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxseg.config import PredictConfig, TrainConfig
from voxseg.runtime.distributed import Parallel
from voxseg.training.engine import Listener
from voxseg.training.events import RunEnd
from voxseg.training.session import TrainingSession

if TYPE_CHECKING:
    from voxseg.inference.job.files import PredictionFiles

log = logging.getLogger("voxseg")


@dataclass(frozen=True)
class TrainResult:
    """What `train()` returns: the outcome and where everything was written."""

    status: str
    run_dir: Path
    summary: dict[str, Any]

    @property
    def best_val_dice(self) -> float | None:
        return self.summary.get("best_val_dice")


@contextmanager
def stop_on_sigint(request_stop: Callable[[], None]) -> Iterator[None]:
    """First Ctrl-C or SIGTERM (what SLURM sends before the time limit): `request_stop()`, so training
    stops after the batch in progress, saves, status `stopped`, and prediction stops before the next
    batch of windows, its finished blocks kept for `--resume`. A second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        log.warning("%s: stopping after the batch in progress (Ctrl-C again to interrupt now)", name)
        request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old_handler in previous.items():
            signal.signal(sig, old_handler)


def train(
    config: TrainConfig,
    listeners: list[Listener] | None = None,
    stop_event: threading.Event | None = None,
    progress: bool = True,
    resume: Path | str | None = None,
    parallel: Parallel | None = None,
) -> TrainResult:
    """Train to the end (or until stopped) and return the result.

    `listeners` are called with every event. Set `stop_event` (from another thread, a timer, a
    GUI) or press Ctrl-C to stop after the batch in progress. `progress` prints the log and a
    progress bar to the console. `resume` continues the run folder given (its checkpoint.pt) up to
    `config.epochs`. `parallel` is this process's place under torchrun (`voxseg.runtime.distributed`).
    Bad input raises `voxseg.VoxsegError` before anything is created.
    """
    session = TrainingSession(config, listeners, stop_event, resume, parallel)
    end: RunEnd | None = None
    with stop_on_sigint(session.request_stop), _console(progress) as console:
        for event in session.events():
            if console is not None:
                console(event)
            if isinstance(event, RunEnd):
                end = event
    assert end is not None, "the engine always ends with RunEnd"
    return TrainResult(end.status, end.run_dir, end.summary)


@contextmanager
def _console(enabled: bool) -> Iterator[Listener | None]:
    if not enabled:
        yield None
        return
    from voxseg.console import ConsoleReporter

    with ConsoleReporter() as reporter:
        yield reporter


def predict_with_console(config: PredictConfig, parallel: Parallel | None = None) -> list[PredictionFiles]:
    """`voxseg predict`'s engine on a resolved config, with a progress bar over windows (per volume)
    and the log on the console (rank 0's alone under torchrun). Ctrl-C or SIGTERM stops before the
    next batch of windows, keeping the finished blocks for `--resume` (`voxseg.errors.Stopped`)."""
    from tqdm import tqdm

    from voxseg.inference.job.files import predict_files

    parallel = parallel or Parallel()
    bars: dict[str, tqdm] = {}

    def progress(name: str, done: int, total: int) -> None:
        bar = bars.get(name)
        if bar is None:
            for finished in bars.values():
                finished.close()
            bar = bars[name] = tqdm(
                total=total, desc=name, unit="window", file=sys.stderr, leave=False, disable=None
            )
        bar.total = max(bar.total, total)
        bar.update(done - bar.n)

    stop = threading.Event()
    with stop_on_sigint(stop.set), _console(parallel.is_main):
        try:
            return predict_files(config, progress if parallel.is_main else None, stop, parallel)
        finally:
            for bar in bars.values():
                bar.close()


def predict(
    source: str | Path,
    images: np.ndarray | str | Path | Sequence[str | Path],
    output: str | Path | None = None,
    **options: Any,
) -> np.ndarray | list[PredictionFiles]:
    """Segment with a trained model (a run folder, or a weights file with `model=`).

    Paths (files or folders) are predicted into `output` like `voxseg predict` and the written files
    are returned; an in-memory Z×Y×X array returns the foreground mask (uint8), or the instance
    labels with `instances="connected"|"watershed"`. `options` are `voxseg predict`'s.
    """
    if isinstance(images, np.ndarray):
        return _predict_array(source, images, **options)
    paths = [images] if isinstance(images, str | Path) else list(images)
    config = PredictConfig.from_dict({"source": source, "input": paths, "output": output, **options})
    from voxseg.inference.job.files import predict_files

    return predict_files(config.resolved())


def _predict_array(source: str | Path, image: np.ndarray, **options: Any) -> np.ndarray:
    """In memory: the model is loaded, the array segmented, nothing written (`Predictor` for many)."""
    from voxseg.inference.model.predictor import Predictor

    result = Predictor(source, **options)(image)
    return result.labels if result.labels is not None else result.mask
