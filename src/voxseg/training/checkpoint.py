"""The resume checkpoint: everything needed to continue a run exactly where an epoch ended.

Written atomically at every epoch end (a `kill -9` leaves the previous or the new file, never a
broken one) and read with `weights_only=True` like any weights file. The data order, patch
positions and augmentation are functions of (seed, epoch), so only torch's RNG needs saving.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from voxseg.errors import ConfigError
from voxseg.training.files import atomic_write

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


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["rng_torch"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
