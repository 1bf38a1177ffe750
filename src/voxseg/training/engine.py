"""The training loop. `Trainer.run()` is a generator of events: faces listen, callbacks record.

Stopping is cooperative: `stop_event` is checked after every batch, so a stop (GUI button, API call,
first Ctrl-C) finishes the batch in progress, saves `last.pth` and ends the run as `stopped`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from voxseg.data.sampling import EpochOrder, PatchDataset, PatchSampler
from voxseg.data.transforms import Augmentation
from voxseg.inference.sliding import dice_score, predict_logits
from voxseg.losses import build_loss
from voxseg.models.registry import build_model
from voxseg.training.checkpoint import restore_rng, save_checkpoint
from voxseg.training.events import (
    BatchEnd,
    EpochEnd,
    Event,
    RunEnd,
    RunStarted,
    ValidationEnd,
    ValidationPreview,
)
from voxseg.training.files import save_state_dict
from voxseg.training.heap import keep_freed_memory
from voxseg.training.performance import (
    autocast,
    available_memory_bytes,
    cpu_cores,
    make_grad_scaler,
    make_optimizer,
    tune_for_device,
    uses_channels_last,
)
from voxseg.training.prefetch import prepared_ahead
from voxseg.training.schedule import LRSchedule
from voxseg.training.setup import PreparedRun

log = logging.getLogger("voxseg")

#: share of the training loop spent waiting for patches above which the log warns
DATA_STARVED_SHARE = 0.2

Callback = Callable[[Event], None]


def auto_workers(device: torch.device, patch_voxels: int) -> int:
    """Loader processes: none on small CPU machines (they would steal the compute cores), and never
    more than the free memory holds (each worker keeps its own copies of the patches in flight)."""
    cores = cpu_cores()
    workers = (0 if cores <= 2 else min(2, cores // 4)) if device.type == "cpu" else min(8, max(1, cores - 1))
    free = available_memory_bytes()
    if free is not None:
        per_worker = 512 * 2**20 + 16 * patch_voxels * 4  # interpreter + a few float32 patches
        workers = min(workers, max(0, int(free * 0.25) // per_worker))
    return workers


def augments_on_device(device: torch.device) -> bool:
    """Whether augmentation runs on the training device, after the copy, instead of in the loader.

    On a GPU: elastic deformation takes ~2 s per 128³ patch on a CPU core and about a millisecond
    there; done in 8 loader processes it starved an H200 (85-93% of the time waiting for data).
    """
    return device.type == "cuda"


class Trainer:
    """Trains one prepared run; writes `best.pth` / `last.pth` and reports through callbacks."""

    def __init__(
        self,
        prepared: PreparedRun,
        callbacks: list[Callback] | None = None,
        stop_event: threading.Event | None = None,
        resume: dict[str, Any] | None = None,
    ) -> None:
        self.prepared = prepared
        self.resume = resume
        self.config = prepared.config
        self.run_dir = prepared.run_dir
        self.device = prepared.device
        self.callbacks = list(callbacks or [])
        self.stop_event = stop_event or threading.Event()
        self.best_dice = -1.0
        self.best_epoch = 0
        self.epochs_completed = 0
        self.patches_seen = 0
        self.train_seconds = 0.0
        self.data_seconds = 0.0
        self.started = time.perf_counter()
        self.start_epoch = 1
        self.history: list[EpochEnd] = []
        self.validations_without_gain = 0
        self.stopped_early = False
        self.built = False

    # -- building blocks ---------------------------------------------------------------------------

    def _seed_everything(self) -> None:
        seed = self.config.seed
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _build(self) -> None:
        config, prepared = self.config, self.prepared
        self._seed_everything()
        self.model = build_model(config.model)
        if prepared.initial_state is not None:
            self.model.load_state_dict(prepared.initial_state)
        self.model.to(self.device)
        self.precision = prepared.precision
        # what runs the training steps: the model itself, or its compiled form (same weights)
        self.runner = tune_for_device(self.model, self.device, self.precision, config.compile)
        self.scaler = make_grad_scaler(self.device, self.precision)
        self.channels_last = uses_channels_last(self.device)
        self.loss_fn = build_loss(config.loss)
        self.optimizer = make_optimizer(self.model, config.lr, self.device)
        self.schedule = LRSchedule(
            self.optimizer, config.scheduler, config.lr, config.epochs, config.warmup_epochs
        )
        samples = 1 if config.whole_volumes else config.samples_per_image
        sampler = PatchSampler(
            prepared.train_volumes, prepared.window, samples, config.foreground_share, config.seed
        )
        augment = Augmentation(prepared.window) if config.augment else None
        self.device_augment = augment if augment is not None and augments_on_device(self.device) else None
        # where batches are prepared on CUDA while the step runs; one for the run (see prepared_ahead)
        self.side_stream = (
            torch.cuda.Stream(self.device)
            if self.device_augment is not None and self.device.type == "cuda"
            else None
        )
        dataset = PatchDataset(prepared.train_volumes, sampler, None if self.device_augment else augment)
        self.order = EpochOrder(len(dataset), config.seed)
        patch_voxels = int(np.prod(prepared.window))
        workers = auto_workers(self.device, patch_voxels) if config.workers is None else config.workers
        self.workers = workers
        self.loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=self.order,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
        )
        log.info(
            "model %s (%.2fM parameters), loss %s, Adam lr %g, batch %d, %d patch(es) per epoch, "
            "%d loader worker(s), device %s%s",
            config.model,
            sum(p.numel() for p in self.model.parameters()) / 1e6,
            config.loss,
            config.lr,
            config.batch_size,
            len(dataset),
            workers,
            self.device,
            f", augmentation on {self.device}" if self.device_augment else "",
        )
        if self.resume is not None:
            self._restore(self.resume)
        self.built = True  # from here on the model is worth saving as last.pth

    def _restore(self, state: dict[str, Any]) -> None:
        """Continue after the checkpoint's epoch: same weights, optimizer moments, LR, RNG, history."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(self._with_this_devices_kernel(state["optimizer"]))
        if state.get("scaler") and self.scaler.is_enabled():  # an fp32/bf16 run saved an empty one
            self.scaler.load_state_dict(state["scaler"])
        self.schedule.load_state_dict(state["schedule"])
        self.start_epoch = state["epoch"] + 1
        self.epochs_completed = state["epoch"]
        self.best_dice, self.best_epoch = state["best_dice"], state["best_epoch"]
        # an early-stopped run that is extended gets a fresh patience
        self.validations_without_gain = 0 if state["stopped_early"] else state["validations_without_gain"]
        self.patches_seen, self.train_seconds = state["patches_seen"], state["train_seconds"]
        self.data_seconds = state.get("data_seconds", 0.0)
        self.history = [EpochEnd(**row) for row in state["history"]]
        restore_rng(state)
        log.info("resumed after epoch %d (best Dice so far %.4f)", state["epoch"], self.best_dice)

    def _with_this_devices_kernel(self, optimizer_state: dict[str, Any]) -> dict[str, Any]:
        """The saved optimizer state, marked fused or not as this device runs it: the flag decides,
        while loading, which device Adam's step counters go to (CPU for the unfused kernel)."""
        fused = self.optimizer.defaults["fused"]
        groups = [{**group, "fused": fused} for group in optimizer_state["param_groups"]]
        return {**optimizer_state, "param_groups": groups}

    def _save_checkpoint(self, epoch: int) -> None:
        save_checkpoint(
            self.run_dir,
            {
                "epoch": epoch,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "schedule": self.schedule.state_dict(),
                "best_dice": self.best_dice,
                "best_epoch": self.best_epoch,
                "validations_without_gain": self.validations_without_gain,
                "stopped_early": self.stopped_early,
                "model_name": self.config.model,
                "patches_seen": self.patches_seen,
                "data_seconds": self.data_seconds,
                "train_seconds": self.train_seconds,
                "history": [dataclasses.asdict(event) for event in self.history],
            },
        )

    def _emit(self, event: Event) -> Event:
        for callback in self.callbacks:
            callback(event)
        return event

    # -- the loop ----------------------------------------------------------------------------------

    def run(self) -> Iterator[Event]:
        """Train, yielding events; always ends with RunEnd (re-raising a failure after it)."""
        with keep_freed_memory():
            yield from self._run()

    def _run(self) -> Iterator[Event]:
        status, error = "failed", None
        try:
            self._build()
            started = RunStarted(
                self.run_dir,
                self.config.epochs,
                len(self.loader),
                str(self.device),
                self.start_epoch,
                tuple(self.history),
            )
            yield self._emit(started)
            for epoch in range(self.start_epoch, self.config.epochs + 1):
                if self.stop_event.is_set() or self.stopped_early:
                    break
                yield from self._train_epoch(epoch)
            status = "stopped" if self.stop_event.is_set() else "completed"
        except KeyboardInterrupt:
            status = "stopped"
        except GeneratorExit:  # the consumer went away: still leave a complete run folder
            self._finish("stopped", None)
            raise
        except Exception as exc:
            log.exception("training failed")
            error = f"{type(exc).__name__}: {exc}"
            yield self._finish(status, error)
            raise
        yield self._finish(status, error)

    def _train_epoch(self, epoch: int) -> Iterator[Event]:
        self.model.train()
        self.order.epoch = epoch
        lr = self.schedule.start_epoch(epoch)
        started = time.perf_counter()
        losses: list[float] = []
        batches = len(self.loader)
        data_seconds = 0.0
        waiting_since = time.perf_counter()
        with contextlib.closing(self._batches_on_device()) as ready:
            for batch, (images, labels) in enumerate(ready, start=1):
                data_seconds += time.perf_counter() - waiting_since
                value = self._step(images, labels)
                if not math.isfinite(value):  # checked before the step, so the weights stay usable
                    raise FloatingPointError(f"training loss became {value} at epoch {epoch}, batch {batch}")
                losses.append(value)
                self.patches_seen += images.shape[0]
                yield self._emit(BatchEnd(epoch, batch, batches, value))
                if self.stop_event.is_set():
                    self.train_seconds += time.perf_counter() - started
                    self.data_seconds += data_seconds
                    log.info("stop requested: stopped after batch %d/%d of epoch %d", batch, batches, epoch)
                    return
                waiting_since = time.perf_counter()
        loop_seconds = time.perf_counter() - started
        self.train_seconds += loop_seconds
        self.data_seconds += data_seconds
        train_loss = float(np.mean(losses))
        dice = None
        if epoch % self.config.val_interval == 0 or epoch == self.config.epochs:
            dice, preview = self._validate()
            improved = dice > self.best_dice
            if improved:
                self.best_dice, self.best_epoch = dice, epoch
                save_state_dict(self.model.state_dict(), self.run_dir / "best.pth")
            self.schedule.validated(epoch, dice)
            self._count_for_early_stop(improved)
            yield self._emit(ValidationEnd(epoch, dice, self.best_dice, self.best_epoch, improved, preview))
        self.epochs_completed = epoch
        seconds = time.perf_counter() - started
        event = EpochEnd(epoch, self.config.epochs, train_loss, dice, lr, seconds, data_seconds, loop_seconds)
        self.history.append(event)
        self._warn_if_data_starved(event)
        self._save_checkpoint(epoch)  # before listeners run: whatever they do, the epoch is kept
        yield self._emit(event)

    def _batches_on_device(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches on the device, augmented and in the step's memory layout.

        With augmentation on the device they are prepared in a background thread, one or two
        batches ahead, on a CUDA stream of its own, so both its CPU side and its GPU kernels overlap
        the training step. Data wait then counts the time until the thread has queued a batch; a
        batch whose kernels are still running when the step needs it shows up as compute.
        """
        ready = (self._to_device(*batch) for batch in self.loader)
        return prepared_ahead(ready, self.side_stream) if self.device_augment is not None else ready

    def _to_device(
        self, images: torch.Tensor, labels: torch.Tensor, seeds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.device_augment is not None:
            images, labels = self.device_augment.batch(images, labels, seeds)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last_3d)
        return images, labels

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """One optimisation step; returns the loss. A non-finite loss is returned before any update."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            logits = self.runner(images)
        loss = self.loss_fn(logits.float(), labels)  # the loss in float32 whatever the precision
        value = float(loss.detach())
        if math.isfinite(value):
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return value

    def _warn_if_data_starved(self, epoch: EpochEnd) -> None:
        """The model should never wait for patches; say so, with the likely fix, when it does."""
        if epoch.data_share <= DATA_STARVED_SHARE:
            return
        if self.workers == 0:
            fix = "give --workers 1 or more to prepare patches in parallel processes"
        elif self.device_augment is not None:  # the workers only cut patches
            fix = (
                f"augmentation on {self.device} (one background thread) is the likely cause; "
                "--no-augment tells"
            )
        elif self.workers + 1 < cpu_cores():
            fix = f"give more --workers (now {self.workers})"
        else:
            fix = "every core is busy: try --no-augment, or a GPU, to see which part is slow"
        log.warning(
            "epoch %d: %.0f%% of the training time was spent waiting for data (%.1f of %.1f s); %s",
            epoch.epoch,
            100 * epoch.data_share,
            epoch.data_seconds,
            epoch.train_seconds,
            fix,
        )

    def _count_for_early_stop(self, improved: bool) -> None:
        self.validations_without_gain = 0 if improved else self.validations_without_gain + 1
        patience = self.config.early_stop_patience
        if patience and self.validations_without_gain >= patience:
            self.stopped_early = True
            log.info("early stop: no better validation Dice in %d validation(s)", patience)

    def _validate(self) -> tuple[float, ValidationPreview]:
        """Mean Dice over the whole validation volumes of sigmoid(logits) > 0.5, and a preview."""
        self.model.eval()
        scores, preview = [], None
        for volume in self.prepared.val_volumes:
            with autocast(self.device, self.precision):
                logits = predict_logits(
                    self.model, volume.image, self.prepared.window, self.device, 2 * self.config.batch_size
                )
            scores.append(dice_score(logits > 0, torch.from_numpy(volume.label)))
            if preview is None:
                probability = torch.sigmoid(logits).numpy()
                preview = ValidationPreview(
                    volume.name, volume.image, volume.label, probability, volume.origin
                )
        self.model.train()
        assert preview is not None, "setup guarantees at least one validation volume"
        return float(np.mean(scores)), preview

    def _finish(self, status: str, error: str | None) -> RunEnd:
        """Save the final weights and report; called exactly once, whatever ended the run."""
        if self.built:
            save_state_dict(self.model.state_dict(), self.run_dir / "last.pth")
        summary: dict[str, Any] = {
            "status": status,
            "best_val_dice": self.best_dice if self.best_epoch else None,
            "best_epoch": self.best_epoch or None,
            "epochs_completed": self.epochs_completed,
            "epochs_planned": self.config.epochs,
            "stopped_early": self.stopped_early,
            "model": self.config.model,
            "loss": self.config.loss,
            "device": str(self.device),
            "patch_size": list(self.prepared.window),
            "seconds": round(time.perf_counter() - self.started, 3),
            "patches_per_second": round(self.patches_seen / self.train_seconds, 4)
            if self.train_seconds
            else None,
            "patches_seen": self.patches_seen,
            "data_wait_share": round(self.data_seconds / self.train_seconds, 4)
            if self.train_seconds
            else None,
            "precision": self.precision.name if self.built else None,
            "workers": self.workers if self.built else None,
            "train_volumes": [v.name for v in self.prepared.train_volumes],
            "val_volumes": [v.name for v in self.prepared.val_volumes],
            "weights": {"best": "best.pth" if self.best_epoch else None, "last": "last.pth"},
            "error": error,
        }
        return self._emit(RunEnd(status, self.run_dir, summary, error))
