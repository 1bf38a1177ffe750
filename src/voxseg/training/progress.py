"""What a run has done so far: counts, the best Dice, early-stop patience, the epoch history.

It travels in the resume checkpoint, so a resumed run continues the same counts and curves.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from voxseg.inference.metrics import best_threshold
from voxseg.training.events import EpochEnd

log = logging.getLogger("voxseg")


@dataclass
class RunProgress:
    epochs_completed: int = 0
    best_dice: float = -1.0  # the kept (best) checkpoint's validation Dice at probability 0.5
    best_epoch: int = 0  # 0: no validation yet
    validations_without_gain: int = 0
    stopped_early: bool = False
    patches_seen: int = 0
    train_seconds: float = 0.0  # the training loops (data + compute), validation excluded
    data_seconds: float = 0.0  # of those, the time spent waiting for patches
    history: list[EpochEnd] = field(default_factory=list)
    threshold: float | None = None  # the best checkpoint's foreground threshold, tuned on validation
    threshold_dice: float | None = None  # its validation Dice at that threshold

    def record_validation(self, epoch: int, dice: float, patience: int, curve: Sequence[float]) -> bool:
        """Count a validation (`dice`: at probability 0.5; `curve`: Dice at each of CUT_POINTS) and
        return whether it is the best so far (then best.pth is due and its threshold is kept).

        Validations are ranked by their Dice at their own tuned threshold, the Dice `voxseg predict`
        gets from them, not at 0.5: a checkpoint whose probabilities are right but shifted is as good
        as one centred on 0.5 once its threshold is tuned, and on held-out embryos the ranking by the
        tuned Dice kept the better one (benchmarks/accuracy.py)."""
        threshold, tuned = best_threshold(curve)
        # a checkpoint from before thresholds were tuned has only its Dice at 0.5 to beat
        improved = tuned > (self.best_dice if self.threshold_dice is None else self.threshold_dice)
        if improved:
            self.best_dice, self.best_epoch = dice, epoch
            self.threshold, self.threshold_dice = threshold, tuned
        self.validations_without_gain = 0 if improved else self.validations_without_gain + 1
        if patience and self.validations_without_gain >= patience:
            self.stopped_early = True
            log.info("early stop: no better tuned validation Dice in %d validation(s)", patience)
        return improved

    def state_dict(self) -> dict[str, Any]:
        """Plain values only (the checkpoint is read with `weights_only=True`)."""
        state = dataclasses.asdict(self)
        state["history"] = [dataclasses.asdict(event) for event in self.history]
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunProgress:
        """From a checkpoint; an early-stopped run that is extended gets a fresh patience."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in state.items() if k in known}
        values["epochs_completed"] = state["epoch"]
        values["history"] = [EpochEnd(**row) for row in state["history"]]
        if values.get("stopped_early"):
            values["stopped_early"], values["validations_without_gain"] = False, 0
        return cls(**values)
