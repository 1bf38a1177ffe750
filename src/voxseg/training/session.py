"""One training run from a config: prepare, create the run folder, train, record. Faces build on this."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from voxseg.config import TrainConfig
from voxseg.errors import ConfigError
from voxseg.runtime.distributed import Parallel
from voxseg.runtime.files import write_text
from voxseg.training.checkpoint import load_checkpoint
from voxseg.training.engine import Listener, Trainer
from voxseg.training.events import Event
from voxseg.training.lineage import keep_inputs
from voxseg.training.run_card import RunCard
from voxseg.training.setup import prepare_run
from voxseg.training.sinks import RunRecorder, log_event
from voxseg.training.tensorboard import TensorBoardSink

log = logging.getLogger("voxseg")
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


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

    def request_stop(self) -> None:
        """Stop after the batch in progress; the model is saved and the run marked `stopped`."""
        self.stop_event.set()

    def events(self) -> Iterator[Event]:
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
        try:
            log.info("run folder %s", run_dir)
            for note in prepared.notes:
                log.info(note)
            for warning in prepared.warnings:
                log.warning(warning)
            recorder = RunRecorder(run_dir, make_zip=prepared.config.zip)
            card = RunCard(run_dir, prepared)
            if checkpoint is None and (prepared.config.keep_inputs or prepared.config.from_run):
                card.keep_inputs(keep_inputs(run_dir, prepared))
            sinks: list[Listener] = [log_event, *self.listeners, card]
            if prepared.config.tensorboard:
                sinks.append(TensorBoardSink(run_dir, prepared.config.to_yaml()))
            trainer = Trainer(prepared, [*sinks, recorder], self.stop_event, checkpoint)
            yield from trainer.run()
        finally:
            log.removeHandler(handler)
            handler.close()

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
