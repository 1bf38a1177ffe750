"""Learning-rate schedules, built on `torch.optim.lr_scheduler` (no LR formula of our own).

From torch:

- warm-up: `LinearLR` from base/(warmup+1) up to base, so warm-up epoch e trains at base*e/(warmup+1);
- after it, `CosineAnnealingLR` (down to MIN_LR over the epochs after warm-up), `PolynomialLR` (nnU-Net's
  poly, power 0.9) or, for `none` and `plateau`, `ConstantLR` with factor 1 (the base LR); `SequentialLR`
  switches from warm-up to decay, starting the decay at exactly the base LR;
- `plateau`: `ReduceLROnPlateau` on the training optimizer, fed each validation Dice after warm-up.

Warm-up and decay are a function of (epoch, epochs, warmup, base LR), so they run on a stand-in optimizer
of their own and each epoch's LR is copied to the training optimizer. Torch's schedulers compute an LR from
the previous one; rather than checkpoint them, a resumed run replays them from epoch 1. That repeats the
uninterrupted run's float operations, so it gets the same LRs bit for bit, never touches the training
optimizer's restored state, and a run extended on resume (larger `epochs`) follows the curve of its new
length, as it did when the curve was a formula. Only the plateau's state goes into the checkpoint, in the
format used since the first checkpoints.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    PolynomialLR,
    ReduceLROnPlateau,
    SequentialLR,
)

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
            ReduceLROnPlateau(
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
        self.curve = self._curve()

    def _curve(self) -> LRScheduler:
        """Warm-up and decay at epoch 1, on a stand-in optimizer (one parameter that never trains)."""
        holder = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=self.base_lr)
        span = max(self.epochs - self.warmup, 1)
        if self.kind == "cosine":
            decay: LRScheduler = CosineAnnealingLR(holder, T_max=span, eta_min=MIN_LR)
        elif self.kind == "poly":
            decay = PolynomialLR(holder, total_iters=span, power=POLY_POWER)
        else:
            decay = ConstantLR(holder, factor=1.0, total_iters=0)
        curve = decay
        if self.warmup > 0:
            warm = LinearLR(holder, start_factor=1 / (self.warmup + 1), total_iters=self.warmup)
            curve = SequentialLR(holder, [warm, decay], milestones=[self.warmup])
        holder.step()  # no gradient, no update: shows torch the optimizer stepped before its schedulers
        return curve

    def lr_for(self, epoch: int) -> float:
        """LR of epoch `epoch` (1-based): linear warm-up, then the chosen decay (or the plateau's LR)."""
        if self.kind == "plateau" and epoch > self.warmup:
            return self.plateau_lr
        if self.curve.last_epoch >= epoch:  # an earlier epoch than the curve's: replay from epoch 1
            self.curve = self._curve()
        while self.curve.last_epoch < epoch - 1:  # the curve is at epoch last_epoch + 1
            self.curve.step()
        return float(self.curve.get_last_lr()[0])

    def start_epoch(self, epoch: int) -> float:
        """Set the LR that epoch `epoch` (1-based) trains at, and return it."""
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
        """The plateau's state (warm-up and decay are replayed from the epoch instead)."""
        return {
            "plateau": self.plateau.state_dict() if self.plateau else None,
            "plateau_lr": self.plateau_lr,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])
        self.plateau_lr = state["plateau_lr"]
