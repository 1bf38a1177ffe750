"""The resume checkpoint: everything needed to continue a run exactly where an epoch ended.

Written atomically at every epoch end (a `kill -9` leaves the previous or the new file, never a
broken one) and read with `weights_only=True` like any weights file. The data order, patch
positions and augmentation are functions of (seed, epoch), so only torch's RNG needs saving.
"""

from __future__ import annotations

import logging
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from voxseg.errors import ConfigError
from voxseg.runtime.files import atomic_write
from voxseg.training.progress import RunProgress
from voxseg.training.schedule import LRSchedule

log = logging.getLogger("voxseg")

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "voxseg-checkpoint/1"


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    state = {"format": FORMAT, **state, "rng_torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    atomic_write(run_dir / CHECKPOINT_NAME, lambda tmp: torch.save(state, tmp))


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise ConfigError(f"--resume: {path} does not exist (the run ended before its first epoch did)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"--resume: cannot read {path} ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError(f"--resume: {path} is not a voxseg checkpoint")
    return state


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's generators (the data order and augmentation have their own)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["rng_torch"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])


def training_state(
    epoch: int,
    model_name: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    schedule: LRSchedule,
    progress: RunProgress,
) -> dict[str, Any]:
    """Everything a resumed run needs after `epoch`, as plain values and tensors."""
    return {
        "epoch": epoch,
        "model_name": model_name,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "schedule": schedule.state_dict(),
        **progress.state_dict(),
    }


def restore_training_state(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    schedule: LRSchedule,
) -> RunProgress:
    """Load a checkpoint's weights, optimizer moments, LR schedule and RNG; return its progress."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(_marked_as_running(optimizer, state["optimizer"]))
    if state.get("scaler") and scaler.is_enabled():  # an fp32/bf16 run saved an empty one
        scaler.load_state_dict(state["scaler"])
    schedule.load_state_dict(state["schedule"])
    restore_rng(state)
    progress = RunProgress.from_state(state)
    log.info("resumed after epoch %d (best Dice so far %.4f)", state["epoch"], progress.best_dice)
    return progress


def _marked_as_running(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> dict[str, Any]:
    """The saved optimizer state, marked fused or not as `optimizer` runs: the flag decides, while
    loading, which device Adam's step counters go to (the CPU for the unfused kernel)."""
    fused = optimizer.defaults["fused"]
    return {**saved, "param_groups": [{**group, "fused": fused} for group in saved["param_groups"]]}
