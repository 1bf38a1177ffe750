"""One training run from a config: prepare, create the run folder, train, record. Faces build on this."""

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
from voxseg.errors import ConfigError
from voxseg.models.registry import resolve_model_name
from voxseg.training.checkpoint import load_checkpoint
from voxseg.training.engine import Callback, Trainer
from voxseg.training.events import EpochEnd, Event, RunEnd, ValidationEnd
from voxseg.training.files import write_text
from voxseg.training.setup import prepare_run
from voxseg.training.sinks import RunRecorder

log = logging.getLogger("voxseg")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


@dataclass(frozen=True)
class TrainResult:
    """What `train()` returns: the outcome and where everything was written."""

    status: str
    run_dir: Path
    summary: dict[str, Any]

    @property
    def best_val_dice(self) -> float | None:
        return self.summary.get("best_val_dice")


def log_event(event: Event) -> None:
    """The human log: one line per epoch and per improvement, one at the end."""
    if isinstance(event, ValidationEnd) and event.improved:
        log.info("epoch %d: validation Dice %.4f, best so far: saved best.pth", event.epoch, event.dice)
    elif isinstance(event, EpochEnd):
        dice = "" if event.val_dice is None else f"  val Dice {event.val_dice:.4f}"
        log.info(
            "epoch %d/%d  loss %.4f%s  lr %.3g  %.1f s (data wait %.1f s, %.0f%% of training)",
            event.epoch,
            event.epochs,
            event.train_loss,
            dice,
            event.lr,
            event.seconds,
            event.data_seconds,
            100 * event.data_share,
        )
    elif isinstance(event, RunEnd):
        s = event.summary
        best = (
            "none"
            if s.get("best_val_dice") is None
            else f"{s['best_val_dice']:.4f} (epoch {s['best_epoch']})"
        )
        log.info(
            "run %s after %d epoch(s) in %.1f s: best validation Dice %s, %s patches/s",
            event.status,
            s["epochs_completed"],
            s["seconds"],
            best,
            s["patches_per_second"],
        )


class TrainingSession:
    """Iterate `events()` to train; call `request_stop()` from anywhere (another thread, a GUI)."""

    def __init__(
        self,
        config: TrainConfig,
        callbacks: list[Callback] | None = None,
        stop_event: threading.Event | None = None,
        resume: Path | None = None,
    ) -> None:
        self.config = config
        self.callbacks = list(callbacks or [])
        self.stop_event = stop_event or threading.Event()
        self.resume = Path(resume) if resume is not None else None

    def request_stop(self) -> None:
        """Stop after the batch in progress; the model is saved and the run marked `stopped`."""
        self.stop_event.set()

    def events(self) -> Iterator[Event]:
        checkpoint = None
        if self.resume is not None:
            checkpoint = load_checkpoint(self.resume)
            saved_model = checkpoint.get("model_name")
            if saved_model is not None and saved_model != resolve_model_name(self.config.model):
                raise ConfigError(f"--resume: {self.resume} trained {saved_model}, not {self.config.model}")
            if self.config.epochs <= checkpoint["epoch"]:
                raise ConfigError(
                    f"--epochs: {self.resume} already trained {checkpoint['epoch']} epoch(s); "
                    f"give --epochs larger than {checkpoint['epoch']} to extend it"
                )
        prepared = prepare_run(self.config, self.resume)  # raises VoxsegError before anything is written
        run_dir = prepared.run_dir
        if self.stop_event.is_set():  # stopped while the data were loading: nothing to keep
            raise KeyboardInterrupt
        if checkpoint is None:
            try:
                run_dir.mkdir(parents=True)
            except OSError as exc:
                raise ConfigError(f"--results: cannot create {run_dir}: {exc.strerror or exc}") from None
        write_text(run_dir / "config.yaml", self.config.to_yaml())
        handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        try:
            log.info("run folder %s", run_dir)
            for note in prepared.notes:
                log.info(note)
            for warning in prepared.warnings:
                log.warning(warning)
            recorder = RunRecorder(run_dir, make_zip=self.config.zip)
            trainer = Trainer(prepared, [log_event, *self.callbacks, recorder], self.stop_event, checkpoint)
            yield from trainer.run()
        finally:
            log.removeHandler(handler)
            handler.close()


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
    callbacks: list[Callback] | None = None,
    stop_event: threading.Event | None = None,
    progress: bool = True,
    resume: Path | str | None = None,
) -> TrainResult:
    """Train to the end (or until stopped) and return the result.

    Set `stop_event` (from another thread, a timer, a GUI) or press Ctrl-C to stop after the batch
    in progress. `progress` prints the log and a progress bar to the console. `resume` continues
    the run folder given (its checkpoint.pt) up to `config.epochs`. Bad input raises
    `voxseg.VoxsegError` before anything is created.
    """
    session = TrainingSession(config, callbacks, stop_event, resume)
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
def _console(enabled: bool) -> Iterator[Callback | None]:
    if not enabled:
        yield None
        return
    from voxseg.console import ConsoleReporter

    with ConsoleReporter() as reporter:
        yield reporter
