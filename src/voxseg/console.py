"""Console face of the engine's events: log lines and a per-epoch progress bar with ETA (tqdm).

The console may go away mid-run (`voxseg train ... | head -1`, a dropped ssh session): then only
the output is lost. `ConsoleStream` drops what nobody reads, so the run goes on and its folder
(train.log, summary.json) still records everything.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from tqdm import tqdm

from voxseg.training.events import BatchEnd, EpochEnd, Event, RunEnd, RunStarted

log = logging.getLogger("voxseg")


def console_gone(exc: BaseException) -> bool:
    """Whether a write failed because nobody reads the console any more: the pipe's reader exited
    (EPIPE, BrokenPipeError), the terminal hung up (EIO), or the stream was closed."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.EPIPE, errno.EIO)
    return isinstance(exc, ValueError) and "closed file" in str(exc)


class ConsoleStream:
    """stdout or stderr that outlives its reader. The first write or flush that finds the console
    gone points the stream's descriptor at os.devnull and drops everything after, so no writer
    (print, logging, tqdm, the interpreter's own flush at exit) fails or stops the run over it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self.stream.write(text)
            except (OSError, ValueError) as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except (OSError, ValueError) as exc:
                self._lose(exc)

    def _lose(self, exc: OSError | ValueError) -> None:
        """Re-raise anything but a gone console (a full disk is the user's to see)."""
        if not console_gone(exc):
            raise exc
        self.gone = True
        with contextlib.suppress(OSError, ValueError):  # a stream without a descriptor: dropping is enough
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)  # what is still buffered, and C code writing to fd, land there quietly
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding... of the stream itself
        return getattr(self.stream, name)


def guarded(stream: TextIO) -> TextIO:
    """`stream` as a ConsoleStream (once: an already guarded stream is returned as it is)."""
    return stream if isinstance(stream, ConsoleStream) else ConsoleStream(stream)  # type: ignore[return-value]


@contextlib.contextmanager
def closable_console() -> Iterator[None]:
    """A command's stdout and stderr as ConsoleStreams while it runs. What is still buffered is
    flushed before it returns, not by the interpreter at exit, where a closed pipe would be an
    `Exception ignored ... BrokenPipeError` and exit code 120."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = guarded(sys.stdout), guarded(sys.stderr)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


class _TqdmHandler(logging.Handler):
    """Print log records above the progress bar instead of through it."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=self.stream)


class ConsoleReporter:
    """Use as a context manager around a run; call it with each event."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.stream = guarded(sys.stderr)  # a console closed mid-run costs the output, not the run
        self.handler = _TqdmHandler(self.stream)
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
                    file=self.stream,
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
