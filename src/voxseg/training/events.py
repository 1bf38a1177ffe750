"""What the engine reports while it trains; faces (CLI, napari, Python) only listen to these."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from voxseg.data.volumes import Volume
    from voxseg.training.threshold_rule import ThresholdChoice


@dataclass(frozen=True)
class RunStarted:
    run_dir: Path
    epochs: int
    batches_per_epoch: int
    device: str
    start_epoch: int = 1  # > 1 when resumed
    history: tuple[EpochEnd, ...] = ()  # epochs completed before a resume


@dataclass(frozen=True)
class BatchEnd:
    epoch: int
    batch: int
    batches: int
    loss: float


@dataclass(frozen=True)
class ValidationPreview:
    """The first validation volume and the model's foreground probability on it (for viewers)."""

    name: str
    image: np.ndarray = field(repr=False)
    label: np.ndarray = field(repr=False)
    probability: np.ndarray = field(repr=False)
    origin: tuple[int, int, int] = (0, 0, 0)  # offset in its file, to overlay the original image
    voxel_size: tuple[float, float, float] | None = None  # µm, Z×Y×X: the viewer's scale

    @classmethod
    def of(cls, volume: Volume, probability: np.ndarray) -> ValidationPreview:
        image, label = np.asarray(volume.image), np.asarray(volume.label)
        return cls(volume.name, image, label, probability, volume.origin, volume.voxel_size)


@dataclass(frozen=True)
class ValidationEnd:
    epoch: int
    dice: float  # at the threshold this checkpoint would predict with (see `choice`): ranks best.pth
    best_dice: float
    best_epoch: int
    improved: bool
    preview: ValidationPreview | None = field(default=None, repr=False, compare=False)
    choice: ThresholdChoice | None = None  # that threshold, the Dice at 0.5, and why


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    epochs: int
    train_loss: float
    val_dice: float | None
    lr: float
    seconds: float
    data_seconds: float = 0.0  # of the training loop, time spent waiting for patches
    train_seconds: float = 0.0  # the training loop (data + compute), validation excluded
    loss_terms: dict[str, float] = field(default_factory=dict)  # a loss of several terms: each one's mean

    @property
    def data_share(self) -> float:
        """Share of the training loop spent waiting for patches."""
        return self.data_seconds / self.train_seconds if self.train_seconds > 0 else 0.0


@dataclass(frozen=True)
class RunEnd:
    status: str  # completed | stopped | failed
    run_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


Event = RunStarted | BatchEnd | ValidationEnd | EpochEnd | RunEnd
