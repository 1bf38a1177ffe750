"""TensorBoard event files in the run folder, written by a listener on the engine's events.

`tensorboard --logdir RESULTS` compares runs. Scalars: the training loss per step and per epoch
(and per epoch each term of a loss of several: WNet3D's `loss/train_ncut`, ...),
the validation Dice (`dice/validation`: at the threshold the checkpoint would predict with, the
number that picks best.pth; beside it the Dice at 0.5 and that threshold), the learning rate, the
data-wait share and the epoch time; at each validation the middle Z slice of the first validation
volume, its labels and the prediction; the resolved options as text. Steps are epochs (and batches
counted from the first epoch), so a resumed run continues the same curves in a new event file of
the same folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voxseg.data.labels import FOREGROUND
from voxseg.training.events import BatchEnd, EpochEnd, Event, RunEnd, RunStarted, ValidationEnd

FOLDER = "tensorboard"


class TensorBoardSink:
    """Listener; the writer (and TensorBoard's import) is made at the run's start."""

    def __init__(self, run_dir: Path, options_yaml: str) -> None:
        self.folder = Path(run_dir) / FOLDER
        self.options_yaml = options_yaml
        self.writer = None
        self.batches = 1

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.folder))
            self.batches = max(event.batches_per_epoch, 1)
            self.writer.add_text("options", "```\n" + self.options_yaml + "```", event.start_epoch)
            return
        if self.writer is None:
            return
        if isinstance(event, BatchEnd):
            step = (event.epoch - 1) * self.batches + event.batch
            self.writer.add_scalar("loss/train_step", event.loss, step)
        elif isinstance(event, ValidationEnd):
            self.writer.add_scalar("dice/validation", event.dice, event.epoch)
            if event.choice is not None:
                self.writer.add_scalar("dice/validation_at_0.5", event.choice.dice_at_half, event.epoch)
                self.writer.add_scalar("threshold/validation", event.choice.threshold, event.epoch)
            if event.preview is not None:
                middle = event.preview.image.shape[0] // 2
                image = event.preview.image[middle]
                span = float(image.max() - image.min()) or 1.0
                self.writer.add_image(
                    "validation/image", (image - image.min()) / span, event.epoch, dataformats="HW"
                )
                self.writer.add_image(
                    "validation/labels",
                    event.preview.label[middle] == FOREGROUND,
                    event.epoch,
                    dataformats="HW",
                )
                probability = np.asarray(event.preview.probability[middle], np.float32)
                self.writer.add_image("validation/prediction", probability, event.epoch, dataformats="HW")
        elif isinstance(event, EpochEnd):
            for tag, value in (
                ("loss/train", event.train_loss),
                ("learning_rate", event.lr),
                ("time/epoch_seconds", event.seconds),
                ("time/data_wait_share", event.data_share),
            ):
                self.writer.add_scalar(tag, value, event.epoch)
            for name, value in event.loss_terms.items():  # a loss of several terms: each one
                self.writer.add_scalar(f"loss/train_{name}", value, event.epoch)
            self.writer.flush()
        elif isinstance(event, RunEnd):
            self.writer.close()
            self.writer = None
