"""The training data pipeline: where patches are cut and augmented, how many loader processes do it,
and what to say when the training step waits for them.

Patches are cut (and, on the CPU, augmented) by a torch DataLoader; on CUDA they are augmented on
the GPU, prepared ahead in a background thread (`voxseg.accel.prefetch`). Each batch reaches the
step on the device, in the model's memory layout.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from voxseg.accel import Acceleration
from voxseg.accel.prefetch import prepared_ahead
from voxseg.config import TrainConfig
from voxseg.data.sampling import EpochOrder, PatchDataset, PatchSampler
from voxseg.data.transforms import Augmentation
from voxseg.data.volumes import Volume
from voxseg.runtime.distributed import Parallel
from voxseg.runtime.hardware import available_memory_bytes, cpu_cores
from voxseg.training.events import EpochEnd

log = logging.getLogger("voxseg")

#: share of the training loop spent waiting for patches above which the log warns
DATA_STARVED_SHARE = 0.2

Batch = tuple[torch.Tensor, torch.Tensor]


def auto_workers(device: torch.device, patch_voxels: int) -> int:
    """Loader processes: none on small CPU machines (they would steal the compute cores), and never
    more than the free memory holds (each worker keeps its own copies of the patches in flight).
    Measured on 2 cores: one worker took SegResNet's data wait from 7% to 2.5% but its throughput
    down 8%."""
    cores = cpu_cores()
    workers = (0 if cores <= 2 else min(2, cores // 4)) if device.type == "cpu" else min(8, max(1, cores - 1))
    free = available_memory_bytes()
    if free is not None:
        per_worker = 512 * 2**20 + 16 * patch_voxels * 4  # interpreter + a few float32 patches
        workers = min(workers, max(0, int(free * 0.25) // per_worker))
    return workers


def leave_stops_to_the_run(worker: int) -> None:
    """A loader worker ignores SIGTERM and SIGHUP: SLURM's pre-emption signals every process of the
    job, and a worker killed by it would end the run `failed`; the run itself stops and saves."""
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):  # no SIGHUP on Windows
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def augments_on_device(device: torch.device) -> bool:
    """Whether augmentation runs on the training device, after the copy, instead of in the loader.

    On a GPU: elastic deformation takes ~2 s per 128³ patch on a CPU core and about a millisecond
    there; done in 8 loader processes it starved an H200 (85-93% of the time waiting for data).
    """
    return device.type == "cuda"


class TrainingBatches:
    """The epoch's batches of one run, reproducible from (seed, epoch)."""

    def __init__(
        self,
        volumes: list[Volume],
        samples: list[int],
        window: tuple[int, int, int],
        config: TrainConfig,
        acceleration: Acceleration,
        parallel: Parallel,
    ) -> None:
        self.device = acceleration.device
        self.acceleration = acceleration
        sampler = PatchSampler(volumes, window, samples, config.foreground_share, config.seed)
        augment = Augmentation(window) if config.augment else None
        self.device_augment = augment if augment is not None and augments_on_device(self.device) else None
        # where batches are prepared on CUDA while the step runs; one for the run (see prepared_ahead)
        on_cuda = self.device_augment is not None and self.device.type == "cuda"
        self.side_stream = torch.cuda.Stream(self.device) if on_cuda else None
        dataset = PatchDataset(volumes, sampler, None if self.device_augment else augment)
        self.patches_per_epoch = len(dataset)
        # under torchrun each rank draws its slice of every global batch (see EpochOrder)
        rank, world = parallel.rank, parallel.world
        self.order = EpochOrder(len(dataset), config.seed, rank, world, config.batch_size)
        workers = config.workers
        self.workers = auto_workers(self.device, int(np.prod(window))) if workers is None else workers
        self.loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=self.order,
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=leave_stops_to_the_run,
        )

    def __len__(self) -> int:
        return len(self.loader)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The epoch's batches on the device, augmented and in the step's memory layout.

        With augmentation on the device they are prepared in a background thread, one or two
        batches ahead, on a CUDA stream of its own, so both its CPU side and its GPU kernels overlap
        the training step. Data wait then counts the time until the thread has queued a batch; a
        batch whose kernels are still running when the step needs it shows up as compute.
        """
        self.order.epoch = epoch
        ready = (self._to_device(*batch) for batch in self._paced())
        return prepared_ahead(ready, self.side_stream) if self.device_augment is not None else ready

    def _paced(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The loader's batches, the thread team resized to the machine's load between steps."""
        for batch in self.loader:
            self.acceleration.between_steps()
            yield batch

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor, seeds: torch.Tensor) -> Batch:
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.device_augment is not None:
            images, labels = self.device_augment.batch(images, labels, seeds)
        return self.acceleration.layout(images), labels

    def describe(self) -> str:
        where = f", augmentation on {self.device}" if self.device_augment is not None else ""
        return f"{self.patches_per_epoch} patch(es) per epoch, {self.workers} loader worker(s){where}"

    def warn_if_starved(self, epoch: EpochEnd) -> None:
        """The model should never wait for patches; say so, with the likely fix, when it does."""
        if epoch.data_share <= DATA_STARVED_SHARE:
            return
        log.warning(
            "epoch %d: %.0f%% of the training time was spent waiting for data (%.1f of %.1f s); %s",
            epoch.epoch,
            100 * epoch.data_share,
            epoch.data_seconds,
            epoch.train_seconds,
            self._likely_fix(),
        )

    def _likely_fix(self) -> str:
        if self.workers == 0 and cpu_cores() <= 2 and self.device.type == "cpu":  # as auto_workers says
            return (
                f"on {cpu_cores()} cores a loader worker would take a core from the training step; "
                "--no-augment tells whether augmentation is the cause"
            )
        if self.workers == 0:
            return "give --workers 1 or more to prepare patches in parallel processes"
        if self.device_augment is not None:  # the workers only cut patches
            where = f"augmentation on {self.device} (one background thread)"
            return f"{where} is the likely cause; --no-augment tells"
        if self.workers + 1 < cpu_cores():
            return f"give more --workers (now {self.workers})"
        return "every core is busy: try --no-augment, or a GPU, to see which part is slow"
