"""Callbacks that turn engine events into the run folder's files: metrics.csv, plots, summary.json."""

from __future__ import annotations

import logging
from pathlib import Path

from voxseg.training.events import EpochEnd, Event, RunEnd, RunStarted, ValidationEnd
from voxseg.training.files import write_json, write_text, zip_folder

log = logging.getLogger("voxseg")

METRICS_HEADER = "epoch,train_loss,val_dice,lr,epoch_seconds,train_seconds,data_seconds,data_share"


class RunRecorder:
    """Keeps the run folder current after every epoch, so a run cut short still documents itself."""

    def __init__(self, run_dir: Path, make_zip: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.make_zip = make_zip
        self.rows: list[str] = []
        self.loss_history: list[tuple[int, float]] = []
        self.dice_history: list[tuple[int, float]] = []
        self.best: tuple[int, float] | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            write_json(self.run_dir / "summary.json", {"status": "running"})
            write_text(self.run_dir / "metrics.csv", METRICS_HEADER + "\n")
            for past in event.history:  # a resumed run continues the same table and curves
                if past.val_dice is not None:
                    self.dice_history.append((past.epoch, past.val_dice))
                    if self.best is None or past.val_dice > self.best[1]:
                        self.best = (past.epoch, past.val_dice)
                self._record_epoch(past, plot=False)
        elif isinstance(event, ValidationEnd):
            self.dice_history.append((event.epoch, event.dice))
            self.best = (event.best_epoch, event.best_dice)
        elif isinstance(event, EpochEnd):
            self._record_epoch(event)
        elif isinstance(event, RunEnd):
            self._finish(event)

    def _record_epoch(self, event: EpochEnd, plot: bool = True) -> None:
        val = "" if event.val_dice is None else f"{event.val_dice:.6f}"
        self.rows.append(
            f"{event.epoch},{event.train_loss:.6f},{val},{event.lr:.6g},{event.seconds:.3f},"
            f"{event.train_seconds:.3f},{event.data_seconds:.3f},{event.data_share:.4f}"
        )
        write_text(self.run_dir / "metrics.csv", "\n".join([METRICS_HEADER, *self.rows]) + "\n")
        self.loss_history.append((event.epoch, event.train_loss))
        if plot and event.val_dice is not None and len(self.dice_history) >= 2:
            self._plot(self.run_dir / "plots" / f"curves_epoch_{event.epoch:04d}.png")

    def _plot(self, path: Path) -> None:
        from voxseg.training.plots import save_training_curves

        path.parent.mkdir(exist_ok=True)
        save_training_curves(path, self.loss_history, self.dice_history, self.best)

    def _finish(self, event: RunEnd) -> None:
        if self.loss_history:
            self._plot(self.run_dir / "plots" / "training_curves.png")
        if self.make_zip:
            event.summary["zip"] = str(self.run_dir.with_name(self.run_dir.name + ".zip"))
        write_json(self.run_dir / "summary.json", event.summary)
        if self.make_zip:
            zip_folder(self.run_dir)
