"""What a run has done so far: counts, the best Dice, early-stop patience, the epoch history.

It travels in the resume checkpoint, so a resumed run continues the same counts and curves.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from voxseg.training.events import EpochEnd
from voxseg.training.threshold_rule import ThresholdChoice, choose_threshold

if TYPE_CHECKING:
    from voxseg.runtime.distributed import Parallel

log = logging.getLogger("voxseg")


@dataclass
class RunProgress:
    epochs_completed: int = 0
    best_dice: float = -1.0  # the kept (best) checkpoint's validation Dice at its threshold
    best_epoch: int = 0  # 0: no validation yet
    validations_without_gain: int = 0
    stopped_early: bool = False
    patches_seen: int = 0
    train_seconds: float = 0.0  # the training loops (data + compute), validation excluded
    data_seconds: float = 0.0  # of those, the time spent waiting for patches
    history: list[EpochEnd] = field(default_factory=list)
    threshold: float | None = None  # the best checkpoint's foreground threshold (see threshold_rule)
    best_dice_at_half: float | None = None  # its validation Dice at probability 0.5
    threshold_reason: str | None = None

    def record_validation(
        self,
        epoch: int,
        curve: Sequence[float],
        patience: int,
        objects: int | None = None,
        partitions: bool = False,
    ) -> tuple[bool, ThresholdChoice]:
        """Count a validation (`curve`: its Dice at each of CUT_POINTS; `objects`: how many the
        validation holds; `partitions`: it is the volumes' own partitions, not labels): whether it is
        the best so far (then best.pth is due and its threshold is kept), and the threshold it would
        predict with.

        Validations are ranked by their Dice at the threshold `voxseg predict` would use with them
        (`threshold_rule`), not at 0.5: a checkpoint whose probabilities are right but shifted is as
        good as one centred on 0.5 once its threshold is tuned, where the validation supports tuning."""
        choice = choose_threshold(curve, objects, partitions)
        improved = choice.dice > self.best_dice
        if improved:
            self.best_dice, self.best_epoch = choice.dice, epoch
            self.threshold, self.best_dice_at_half = choice.threshold, choice.dice_at_half
            self.threshold_reason = choice.reason
        self.validations_without_gain = 0 if improved else self.validations_without_gain + 1
        if patience and self.validations_without_gain >= patience:
            self.stopped_early = True
            log.info("early stop: no better validation Dice in %d validation(s)", patience)
        return improved, choice

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
        if state.get("threshold_dice") is not None:  # saved before the threshold rule: best at its tuned cut
            values["best_dice_at_half"], values["best_dice"] = state["best_dice"], state["threshold_dice"]
        values["epochs_completed"] = state["epoch"]
        values["history"] = [EpochEnd(**row) for row in state["history"]]
        if values.get("stopped_early"):
            values["stopped_early"], values["validations_without_gain"] = False, 0
        return cls(**values)


@dataclass
class EpochLosses:
    """An epoch's training losses: their mean, and the mean of each named term of a loss of several
    (WNet3D's N-cut, reconstruction and partition), averaged over the ranks too."""

    values: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, value: float, terms: dict[str, float]) -> None:
        self.values.append(value)
        for name, term in terms.items():
            self.terms.setdefault(name, []).append(term)

    def mean(self) -> float:
        return float(np.mean(self.values))

    def term_means(self, parallel: Parallel) -> dict[str, float]:
        """Each term's mean over the epoch and the ranks (every rank calls this, as it is collective)."""
        if not self.terms:
            return {}
        means = np.array([np.mean(values) for values in self.terms.values()])
        (total,) = parallel.sum_arrays(means)
        return {name: float(value) / parallel.world for name, value in zip(self.terms, total, strict=True)}
