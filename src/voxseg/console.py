"""Console face of the engine's events: log lines and a per-epoch progress bar with ETA (tqdm)."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

from voxseg.training.events import BatchEnd, EpochEnd, Event, RunEnd, RunStarted

log = logging.getLogger("voxseg")


class _TqdmHandler(logging.Handler):
    """Print log records above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


class ConsoleReporter:
    """Use as a context manager around a run; call it with each event."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.handler = _TqdmHandler()
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.epoch_seconds: list[float] = []
        self.epochs = 0

    def __enter__(self) -> ConsoleReporter:
        log.addHandler(self.handler)
        log.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_bar()
        log.removeHandler(self.handler)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.epochs = event.epochs
            self.started = time.perf_counter()
        elif isinstance(event, BatchEnd):
            if self.bar is None:
                self.bar = tqdm(
                    total=event.batches,
                    desc=f"epoch {event.epoch}/{self.epochs}",
                    unit="batch",
                    file=sys.stderr,
                    leave=False,
                    dynamic_ncols=True,
                    disable=None,  # a bar only on a terminal; logs and pipes get the epoch lines
                )
            self.bar.update(1)
            self.bar.set_postfix_str(f"loss {event.loss:.4f}{self._run_eta(event.epoch)}", refresh=False)
        elif isinstance(event, EpochEnd):
            self.epoch_seconds.append(event.seconds)
            self._close_bar()
        elif isinstance(event, RunEnd):
            self._close_bar()

    def _run_eta(self, epoch: int) -> str:
        if not self.epoch_seconds:
            return ""
        remaining = (self.epochs - epoch + 1) * sum(self.epoch_seconds) / len(self.epoch_seconds)
        return f", run ETA {time.strftime('%H:%M:%S', time.gmtime(remaining))}"
