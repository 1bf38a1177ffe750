"""The training loop: `Trainer.run()` yields events, and hands each one to its listeners first.

The steps are named as in nnU-Net's trainer: `build`, then per epoch `epoch_start`, `train_step`
per batch, `validate`, `epoch_end`, and `finish` once, whatever ended the run. Stopping is
cooperative: `stop_event` is checked after every batch, so a stop (GUI button, API call, first
Ctrl-C) finishes the batch in progress, saves `last.pth` and ends the run as `stopped`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from voxseg.accel import Acceleration, accelerated
from voxseg.data.labels import scored
from voxseg.inference.model.sliding import blended_probability, window_predictor
from voxseg.inference.scoring.metrics import CUT_POINTS, dice_by_threshold
from voxseg.losses import build_objective
from voxseg.models.registry import build_model
from voxseg.runtime.files import save_state_dict
from voxseg.runtime.precision import autocast, make_grad_scaler
from voxseg.training.checkpoint import (
    restore_training_state,
    save_checkpoint,
    seed_everything,
    training_state,
)
from voxseg.training.events import (
    BatchEnd,
    EpochEnd,
    Event,
    RunEnd,
    RunStarted,
    ValidationEnd,
    ValidationPreview,
)
from voxseg.training.loader import TrainingBatches
from voxseg.training.progress import EpochLosses, RunProgress
from voxseg.training.schedule import LRSchedule
from voxseg.training.setup import PreparedRun
from voxseg.training.summary import run_summary

log = logging.getLogger("voxseg")

Listener = Callable[[Event], None]


class Trainer:
    """Trains one prepared run; writes `best.pth`, `last.pth` and `checkpoint.pt`."""

    def __init__(
        self,
        prepared: PreparedRun,
        listeners: list[Listener] | None = None,
        stop_event: threading.Event | None = None,
        resume: dict[str, Any] | None = None,
    ) -> None:
        self.prepared = prepared
        self.config = prepared.config
        self.device = prepared.device
        self.run_dir = prepared.run_dir
        self.listeners = list(listeners or [])
        self.stop_event = stop_event or threading.Event()
        self.resume = resume
        self.parallel = prepared.parallel  # this process's rank among torchrun's (one process: rank 0 of 1)
        self.progress = RunProgress()
        self.stopping = False  # a stop agreed by every rank (see _stop_agreed)
        self.started = time.perf_counter()
        self.built = False

    def _emit(self, event: Event) -> Event:
        """The one channel: every listener sees the event before the consumer of `run()` does."""
        for listener in self.listeners:
            listener(event)
        return event

    def run(self) -> Iterator[Event]:
        """Train, yielding events; always ends with RunEnd (re-raising a failure after it)."""
        status, error = "failed", None
        config = self.config
        with accelerated(self.device, config.fast_kernels, config.compile, config.threads) as acceleration:
            try:
                self.build(acceleration)
                start, history = self.progress.epochs_completed + 1, tuple(self.progress.history)
                batches, device = len(self.batches), str(self.device)
                yield self._emit(RunStarted(self.run_dir, config.epochs, batches, device, start, history))
                for epoch in range(start, config.epochs + 1):
                    if self._stop_agreed() or self.progress.stopped_early:
                        break
                    yield from self.train_epoch(epoch)
                status = "stopped" if self.stopping else "completed"
            except KeyboardInterrupt:
                status = "stopped"
            except GeneratorExit:  # the consumer went away: still leave a complete run folder
                self.finish("stopped", None)
                raise
            except Exception as exc:
                log.exception("training failed")
                error = f"{type(exc).__name__}: {exc}"
                yield self.finish(status, error)
                raise
            yield self.finish(status, error)

    # -- the named steps ---------------------------------------------------------------------------

    def build(self, acceleration: Acceleration) -> None:
        """Model, loss, optimizer, schedule and data, seeded; then the checkpoint's state on resume."""
        config, prepared = self.config, self.prepared
        seed_everything(config.seed)
        shape = (prepared.model_voxel_size, config.classes, len(prepared.outputs))
        self.model = build_model(config.model, *shape)
        if prepared.initial_state is not None:
            self.model.load_state_dict(prepared.initial_state)
        self.model.to(self.device)
        self.precision = prepared.precision
        # what runs the steps: the model itself, or its compiled form (same weights)
        tuned = acceleration.tune(self.model, mixed_precision=self.precision.dtype is not None)
        self.runner = self.parallel.wrap(tuned, self.device, config.sync_batchnorm)
        self.scaler = make_grad_scaler(self.device, self.precision)
        learned = (prepared.sparse, prepared.self_supervision, prepared.outputs)
        self.loss_fn = build_objective(config.loss, *learned)
        # Adam's fused kernel: one pass over all parameters instead of a dozen small operations per
        # tensor (SegResNet on 2 CPU cores: 5.5 -> 1.9 ms a step); the same update up to rounding.
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, fused=fused)
        self.schedule = LRSchedule(
            self.optimizer, config.scheduler, config.lr, config.epochs, config.warmup_epochs
        )
        self.batches = TrainingBatches(
            prepared.train_volumes, prepared.samples, prepared.window, config, acceleration, self.parallel
        )
        size = sum(p.numel() for p in self.model.parameters()) / 1e6
        log.info(
            f"model {config.model} ({size:.2f}M parameters), loss {prepared.loss_description}, Adam lr "
            f"{config.lr:g}, {self.parallel.describe(config.batch_size)}, {self.batches.describe()}, "
            f"device {self.device}"
        )
        if self.resume is not None:
            parts = (self.model, self.optimizer, self.scaler, self.schedule)
            self.progress = restore_training_state(self.resume, *parts)
        self.built = True  # from here on the model is worth saving as last.pth

    def train_epoch(self, epoch: int) -> Iterator[Event]:
        """epoch start, a train step per batch, validation when due, epoch end."""
        lr = self.schedule.start_epoch(epoch)
        self.model.train()
        started = time.perf_counter()
        losses, data_seconds, waiting_since = EpochLosses(), 0.0, time.perf_counter()
        with contextlib.closing(self.batches.epoch(epoch)) as batches:
            for batch, (images, labels) in enumerate(batches, start=1):
                data_seconds += time.perf_counter() - waiting_since
                value = self.parallel.mean(self.train_step(images, labels))
                if not math.isfinite(value):  # checked before the step, so the weights stay usable
                    raise FloatingPointError(f"training loss became {value} at epoch {epoch}, batch {batch}")
                losses.add(value, self.loss_fn.terms)
                self.progress.patches_seen += images.shape[0] * self.parallel.world
                yield self._emit(BatchEnd(epoch, batch, len(self.batches), value))
                if self._stop_agreed():
                    log.info(
                        "stop requested: stopped after batch %d/%d of epoch %d",
                        batch,
                        len(self.batches),
                        epoch,
                    )
                    break
                waiting_since = time.perf_counter()
        loop_seconds = time.perf_counter() - started
        self.progress.train_seconds += loop_seconds
        self.progress.data_seconds += data_seconds
        if self.stopping:  # an unfinished epoch is neither validated nor checkpointed
            return
        dice = None
        if epoch % self.config.val_interval == 0 or epoch == self.config.epochs:
            preview, curve = self.validate()
            prepared = self.prepared
            improved, choice = self.progress.record_validation(
                epoch, curve, self.config.early_stop_patience, prepared.val_objects, prepared.partitions
            )
            if improved and self.parallel.is_main:
                save_state_dict(self.model.state_dict(), self.run_dir / "best.pth")
            self.schedule.validated(epoch, dice := choice.dice)  # what ranks best.pth too
            p = self.progress
            yield self._emit(ValidationEnd(epoch, dice, p.best_dice, p.best_epoch, improved, preview, choice))
        seconds, loss, terms = time.perf_counter() - started, losses.mean(), losses.term_means(self.parallel)
        yield self.epoch_end(
            EpochEnd(epoch, self.config.epochs, loss, dice, lr, seconds, data_seconds, loop_seconds, terms)
        )

    def _stop_agreed(self) -> bool:
        """Whether to stop here: asked of any rank, so every rank stops at the same step."""
        self.stopping = self.stopping or self.parallel.any(self.stop_event.is_set())
        return self.stopping

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """One optimisation step; returns the loss. A non-finite loss is returned before any update."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            outputs = self.runner(images)
        loss = self.loss_fn(outputs.float(), labels, images)  # in float32 whatever the precision
        value = float(loss.detach())
        if self.parallel.any(not math.isfinite(value)):  # every rank skips the step (and then raises)
            return math.nan
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return value

    def validate(self) -> tuple[ValidationPreview | None, np.ndarray]:
        """A preview and the mean Dice over the whole validation volumes of the probability above
        every threshold in CUT_POINTS (the run chooses its threshold on it)."""
        self.model.eval()
        preview, curves = None, [np.zeros(len(CUT_POINTS))]  # a rank may have no volume
        predict = window_predictor(self.model, self.device, lambda: autocast(self.device, self.precision))
        window, batch = self.prepared.window, 2 * self.config.batch_size
        for volume in self.parallel.shard(self.prepared.val_volumes):
            probability = blended_probability(volume.image, window, predict, batch)[0]  # the foreground
            curves.append(dice_by_threshold(*scored(probability, volume.label)))
            preview = preview or ValidationPreview.of(volume, probability)
        self.model.train()
        Acceleration.after_validation()  # its buffers freed: the heap's fragments go back
        count = np.float64(len(curves) - 1)
        curve, count = self.parallel.sum_arrays(np.sum(curves, axis=0), count)
        return preview, curve / count  # preview: on rank 0, which has volume 0

    def epoch_end(self, event: EpochEnd) -> EpochEnd:
        self.progress.epochs_completed = event.epoch
        self.progress.history.append(event)
        self.batches.warn_if_starved(event)
        parts = (self.model, self.optimizer, self.scaler, self.schedule, self.progress)
        if self.parallel.is_main:  # before listeners run: whatever they do, the epoch is kept
            save_checkpoint(self.run_dir, training_state(event.epoch, self.config.model, *parts))
        return self._emit(event)  # type: ignore[return-value]

    def finish(self, status: str, error: str | None) -> RunEnd:
        """Save the final weights and report; called exactly once, whatever ended the run."""
        if self.built and self.parallel.is_main:
            save_state_dict(self.model.state_dict(), self.run_dir / "last.pth")
        seconds, workers = time.perf_counter() - self.started, self.batches.workers if self.built else None
        summary = run_summary(status, error, self.progress, seconds, self.prepared, workers)
        return self._emit(RunEnd(status, self.run_dir, summary, error))  # type: ignore[return-value]
