"""The job's processes under torchrun: this process's place (`Parallel`), the process group, and the
few agreements training and prediction make between ranks.

torchrun starts the processes and `torch.distributed` connects them; a single process is the world
of one, where every method does nothing, so training and prediction read the same either way.
- Training (`voxseg.training`): each rank draws its slice of every global batch (`EpochOrder`), so a
  step of W ranks with batch B sees the patches of a single-process step with batch B×W;
  DistributedDataParallel averages the gradients; validation is sharded and its Dice sums added, so
  all ranks agree on the LR plateau and early stop; a stop is agreed after every batch.
- Prediction (`voxseg.inference.distributed`): the ranks share a volume's blocks, wait for each
  other between phases (`barrier`) and gather what rank 0 writes once (`gather`).
- Collectives time out (`TIMEOUT`) and a rank that dies breaks its peers' collectives, so a failed
  job ends with an error instead of hanging; torchrun then stops the rest and exits non-zero.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

log = logging.getLogger("voxseg")

#: how long a collective may wait for the other ranks (validation of a large volume included)
TIMEOUT = datetime.timedelta(minutes=30)

T = TypeVar("T")


@dataclass(frozen=True)
class Parallel:
    """This process's place in the job: rank `rank` of `world`, on `device` (`local_rank`'s GPU)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    local_world: int = 1  # the ranks on this node

    @property
    def one_node(self) -> bool:
        """Whether every rank runs on this machine (they then share its page cache and files)."""
        return self.local_world == self.world

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def device_name(self, asked: str) -> str:
        """Under torchrun each rank runs on its own GPU (LOCAL_RANK); otherwise on the device asked."""
        if self.active and asked in ("auto", "cuda") and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return asked

    def describe(self, batch: int) -> str:
        if not self.active:
            return f"1 process, batch {batch}"
        return (
            f"{self.world} processes ({self.backend}, torchrun), batch {batch} per process: "
            f"global batch {batch * self.world}"
        )

    def wrap(self, model: nn.Module, device: torch.device, sync_batchnorm: bool = False) -> nn.Module:
        """The model as the training step runs it: DistributedDataParallel across the ranks (its batch
        norms synchronised when asked; the parameters stay the same objects, so the optimizer's hold)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if sync_batchnorm:
            converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            log.info("batch norm synchronised over the %d processes (--sync-batchnorm)", self.world)
            model = converted

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def mean(self, value: float) -> float:
        """The mean of `value` over the ranks (the step's loss, as one process would report it)."""
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
        return float(tensor) / self.world

    def any(self, flag: bool) -> bool:
        """Whether any rank says yes (a stop asked of one rank stops them all at the same step)."""
        if not self.active:
            return flag
        tensor = torch.tensor([int(flag)])
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return bool(tensor)

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of `items` (every `world`-th, from `rank`)."""
        return list(items[self.rank :: self.world])

    def sum_arrays(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Element-wise sums over the ranks (validation scores and counts)."""
        if not self.active:
            return list(arrays)
        flat = torch.from_numpy(np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays]))
        torch.distributed.all_reduce(flat)
        out, start = [], 0
        for array in arrays:
            size = np.asarray(array).size
            out.append(flat[start : start + size].numpy().reshape(np.shape(array)))
            start += size
        return out

    def barrier(self) -> None:
        """Wait until every rank is here (a phase's outputs are then complete for all)."""
        if self.active:
            torch.distributed.barrier()

    def gather(self, value: T) -> list[T]:
        """Every rank's `value`, in rank order, on every rank."""
        if not self.active:
            return [value]
        box: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(box, value)
        return box

    def decided_by_main(self, decide: Callable[[], T]) -> T:
        """`decide()` run by rank 0 alone (checks, then the first writes), its value given to every
        rank, or the error it raised raised on every rank, so none waits for an answer that never comes."""
        if not self.active:
            return decide()
        outcome: tuple[T | None, BaseException | None] = (None, None)
        if self.is_main:
            try:
                outcome = (decide(), None)
            except Exception as error:
                outcome = (None, error)
        value, error = self.from_main(outcome)
        if error is not None:
            raise error
        return value  # type: ignore[return-value]

    def from_main(self, value: T) -> T:
        """Rank 0's `value` on every rank (e.g. the run folder's name)."""
        if not self.active:
            return value
        box: list[Any] = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def from_environment() -> Parallel:
    """This process's place as torchrun describes it (WORLD_SIZE, RANK, LOCAL_RANK); one process else."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Parallel()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    # NCCL for the GPUs' gradients, gloo for the small CPU tensors of the agreements (loss, stop,
    # validation sums) and for CPU-only jobs
    backend = (
        "cpu:gloo,cuda:nccl"
        if torch.cuda.is_available() and torch.distributed.is_nccl_available()
        else "gloo"
    )
    return Parallel(rank, world, local, backend, local_world)


@contextmanager
def process_group(parallel: Parallel) -> Iterator[Parallel]:
    """Join the job's process group for the block (nothing to join for a single process)."""
    if not parallel.active or torch.distributed.is_initialized():
        yield parallel
        return
    if parallel.backend and "nccl" in parallel.backend:
        torch.cuda.set_device(parallel.local_rank)
    torch.distributed.init_process_group(parallel.backend, timeout=TIMEOUT)
    try:
        yield parallel
        # every rank done before any tears down: a rank that leaves while its peer still finishes the
        # last collective closes gloo's connection under it (seen once in CI: the peer aborted, SIGABRT)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()
