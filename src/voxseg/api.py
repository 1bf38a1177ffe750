"""`voxseg.train()`: a training run from Python, with Ctrl-C handling and an optional console display.

The glue between the core's `TrainingSession` and a person at a terminal or in a notebook; the
command line uses it too.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxseg.config import TrainConfig
from voxseg.training.engine import Listener
from voxseg.training.events import RunEnd
from voxseg.training.session import TrainingSession

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
def stop_on_sigint(session: TrainingSession) -> Iterator[None]:
    """First Ctrl-C: stop after the batch in progress. Second: interrupt at once (weights still saved)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        log.warning("Ctrl-C: stopping after the batch in progress (press again to interrupt now)")
        session.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def train(
    config: TrainConfig,
    listeners: list[Listener] | None = None,
    stop_event: threading.Event | None = None,
    progress: bool = True,
    resume: Path | str | None = None,
) -> TrainResult:
    """Train to the end (or until stopped) and return the result.

    `listeners` are called with every event. Set `stop_event` (from another thread, a timer, a
    GUI) or press Ctrl-C to stop after the batch in progress. `progress` prints the log and a
    progress bar to the console. `resume` continues the run folder given (its checkpoint.pt) up to
    `config.epochs`. Bad input raises `voxseg.VoxsegError` before anything is created.
    """
    session = TrainingSession(config, listeners, stop_event, resume)
    end: RunEnd | None = None
    with stop_on_sigint(session), _console(progress) as console:
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
