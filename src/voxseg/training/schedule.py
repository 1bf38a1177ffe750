"""Learning-rate schedules. Epoch-wise and stateless (a function of the epoch) except `plateau`,
whose state is checkpointed: either way a resumed run follows the same curve as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: ReduceLROnPlateau settings: halve the LR after this many validations without a better Dice
PLATEAU_FACTOR, PLATEAU_PATIENCE, MIN_LR = 0.5, 5, 1e-6
POLY_POWER = 0.9  # nnU-Net's


class LRSchedule:
    """Sets the optimizer's LR at each epoch start; `plateau` also listens to validation Dice."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, kind: str, base_lr: float, epochs: int, warmup: int
    ) -> None:
        self.optimizer = optimizer
        self.kind = kind
        self.base_lr = base_lr
        self.epochs = epochs
        self.warmup = warmup
        self.plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="max",
                factor=PLATEAU_FACTOR,
                patience=PLATEAU_PATIENCE - 1,  # torch reduces once bad validations *exceed* patience
                min_lr=MIN_LR,
            )
            if kind == "plateau"
            else None
        )
        self.plateau_lr = base_lr

    def lr_for(self, epoch: int) -> float:
        """LR of epoch `epoch` (1-based): linear warm-up, then the chosen decay."""
        if epoch <= self.warmup:
            return self.base_lr * epoch / (self.warmup + 1)
        if self.kind == "plateau":
            return self.plateau_lr
        span = max(self.epochs - self.warmup, 1)
        progress = min((epoch - 1 - self.warmup) / span, 1.0)
        if self.kind == "cosine":
            return MIN_LR + (self.base_lr - MIN_LR) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "poly":
            return self.base_lr * (1 - progress) ** POLY_POWER
        return self.base_lr

    def start_epoch(self, epoch: int) -> float:
        lr = self.lr_for(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def validated(self, epoch: int, dice: float) -> None:
        """Plateau counts validations after warm-up; a reduction applies from the next epoch on."""
        if self.plateau is not None and epoch > self.warmup:
            self.plateau.step(dice)
            self.plateau_lr = self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {
            "plateau": self.plateau.state_dict() if self.plateau else None,
            "plateau_lr": self.plateau_lr,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])
        self.plateau_lr = state["plateau_lr"]
