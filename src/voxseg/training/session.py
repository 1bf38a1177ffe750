"""One training run from a config: prepare, create the run folder, train, record. Faces build on this.

However a run ends, its summary.json says how and why: `completed`, `stopped` (a stop request, a
signal such as SLURM's SIGTERM, a KeyboardInterrupt, the event stream closed) or `failed` (the
exception's line), also where it ends before or after the engine could report it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from voxseg.config import TrainConfig
from voxseg.errors import ConfigError
from voxseg.runtime.distributed import Parallel
from voxseg.runtime.files import write_text
from voxseg.training.checkpoint import load_checkpoint
from voxseg.training.engine import Listener, Trainer
from voxseg.training.events import Event, RunEnd
from voxseg.training.lineage import keep_inputs
from voxseg.training.progress import RunProgress
from voxseg.training.run_card import RunCard
from voxseg.training.setup import PreparedRun, prepare_run
from voxseg.training.sinks import RunRecorder, log_event
from voxseg.training.summary import STOP_REQUESTED, run_summary
from voxseg.training.tensorboard import TensorBoardSink

log = logging.getLogger("voxseg")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"

#: signals that stop a run after the batch in progress (saved, `stopped`, the signal as the reason)
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
EVENTS_CLOSED = "the event stream was closed"


class TrainingSession:
    """Iterate `events()` to train; call `request_stop()` from anywhere (another thread, a GUI)."""

    def __init__(
        self,
        config: TrainConfig,
        listeners: list[Listener] | None = None,
        stop_event: threading.Event | None = None,
        resume: Path | None = None,
        parallel: Parallel | None = None,
    ) -> None:
        self.config = config
        self.listeners = list(listeners or [])
        self.stop_event = stop_event or threading.Event()
        self.resume = Path(resume) if resume is not None else None
        self.parallel = parallel or Parallel()  # under torchrun: this rank; only rank 0 writes
        self.stopped_by: str | None = None  # a signal's name, or EVENTS_CLOSED: more than a request

    def request_stop(self) -> None:
        """Stop after the batch in progress; the model is saved and the run marked `stopped`."""
        self.stop_event.set()

    def events(self) -> Iterator[Event]:
        """Train, yielding the engine's events; summary.json records how the run ended, whatever ends it."""
        with self._stop_signals_noted():
            yield from self._events()

    def _events(self) -> Iterator[Event]:
        config = self.config.resolved()  # a bad option is a ConfigError here, before anything is read
        checkpoint = self._checkpoint_to_resume(config)
        prepared = prepare_run(config, self.resume, self.parallel)  # VoxsegError before anything is written
        if self.stop_event.is_set():  # stopped while the data were loading: nothing to keep
            raise KeyboardInterrupt
        if not self.parallel.is_main:  # the other ranks train and stay silent; rank 0 keeps the record
            yield from Trainer(prepared, [], self.stop_event, checkpoint).run()
            return
        run_dir = prepared.run_dir
        if checkpoint is None:
            try:
                run_dir.mkdir(parents=True)
            except OSError as exc:
                raise ConfigError(f"--results: cannot create {run_dir}: {exc.strerror or exc}") from None
        write_text(run_dir / "config.yaml", prepared.config.to_yaml())
        handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        started, trainer = time.perf_counter(), None  # no Trainer yet: nothing trained to summarise
        recorder = RunRecorder(run_dir, make_zip=prepared.config.zip)
        try:
            log.info("run folder %s", run_dir)
            for note in prepared.notes:
                log.info(note)
            for warning in prepared.warnings:
                log.warning(warning)
            card = RunCard(run_dir, prepared)
            if checkpoint is None and (prepared.config.keep_inputs or prepared.config.from_run):
                card.keep_inputs(keep_inputs(run_dir, prepared))
            sinks: list[Listener] = [self._name_the_stop, log_event, *self.listeners, card]
            if prepared.config.tensorboard:
                sinks.append(TensorBoardSink(run_dir, prepared.config.to_yaml()))
            trainer = Trainer(prepared, [*sinks, recorder], self.stop_event, checkpoint)
            with contextlib.closing(trainer.run()) as run:
                try:
                    # not `yield from`: a consumer's close would end the run before its reason is noted
                    for event in run:  # noqa: UP028
                        yield event
                except GeneratorExit:
                    self.stopped_by = self.stopped_by or EVENTS_CLOSED
                    raise
        except BaseException as exc:
            if not recorder.finished:
                progress = RunProgress() if trainer is None else trainer.progress
                self._record_unreported_end(recorder, prepared, progress, time.perf_counter() - started, exc)
            raise
        finally:
            log.removeHandler(handler)
            handler.close()

    @contextlib.contextmanager
    def _stop_signals_noted(self) -> Iterator[None]:
        """In the main thread, a stop signal becomes the run's reason, then is handled as before it
        came (voxseg.train's handler asks for the stop) or, where Python had no handler for it (the
        default SIGTERM, SIGHUP: death without a record), the session asks for the stop itself.
        Ignored signals stay ignored (nohup)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
        previous = {
            sig: handler for sig, handler in handlers.items() if handler not in (signal.SIG_IGN, None)
        }

        def note(signum: int, frame: FrameType | None) -> Any:
            name = signal.Signals(signum).name
            self.stopped_by = self.stopped_by or name
            handler = previous[signum]
            if callable(handler):
                return handler(signum, frame)
            log.warning("%s: stopping after the batch in progress", name)
            self.request_stop()

        for sig in previous:
            signal.signal(sig, note)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop_reason(self) -> str:
        """What stopped the run: a signal, the closed event stream, a request, else a KeyboardInterrupt."""
        if self.stopped_by is not None:
            return self.stopped_by
        return STOP_REQUESTED if self.stop_event.is_set() else "KeyboardInterrupt"

    def _name_the_stop(self, event: Event) -> None:
        """The engine knows only that it stopped: the summary names what asked (before it is written)."""
        if isinstance(event, RunEnd) and event.status == "stopped":
            event.summary["reason"] = self._stop_reason()

    def _record_unreported_end(
        self,
        recorder: RunRecorder,
        prepared: PreparedRun,
        progress: RunProgress,
        seconds: float,
        exc: BaseException,
    ) -> None:
        """summary.json for a run that ended where the engine could not report it (setting up, a
        listener failing at its end): `failed` with the exception's line, else `stopped`."""
        failed = isinstance(exc, Exception)
        error = f"{type(exc).__name__}: {exc}" if failed else None
        summary = run_summary("failed" if failed else "stopped", error, progress, seconds, prepared, None)
        if failed:
            log.error("run failed: %s", summary["reason"], exc_info=exc)
        else:
            summary["reason"] = self._stop_reason()
            log.info("run stopped (%s)", summary["reason"])
        recorder.write_summary(summary)

    def _checkpoint_to_resume(self, config: TrainConfig) -> dict | None:
        """The checkpoint of the run to continue, checked against the config (None for a new run)."""
        if self.resume is None:
            return None
        checkpoint = load_checkpoint(self.resume)
        saved_model = checkpoint.get("model_name")
        if saved_model is not None and saved_model != config.model:
            raise ConfigError(f"--resume: {self.resume} trained {saved_model}, not {config.model}")
        if config.epochs <= checkpoint["epoch"]:
            raise ConfigError(
                f"--epochs: {self.resume} already trained {checkpoint['epoch']} epoch(s); "
                f"give --epochs larger than {checkpoint['epoch']} to extend it"
            )
        return checkpoint
