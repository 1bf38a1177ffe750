"""Listeners that turn engine events into the run's record: the log, metrics.csv, plots, summary.json."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from voxseg.runtime.files import write_json, write_text, zip_folder
from voxseg.training.events import EpochEnd, Event, RunEnd, RunStarted, ValidationEnd
from voxseg.training.plots import TERM_NAMES, CurveHistory
from voxseg.training.summary import best_dice_text, threshold_text

log = logging.getLogger("voxseg")

METRICS_HEADER = "epoch,train_loss,val_dice,lr,epoch_seconds,train_seconds,data_seconds,data_share"


def metrics_table(epochs: list[EpochEnd]) -> str:
    """metrics.csv: one row per epoch; a loss of several terms adds a `<term>_loss` column for each."""
    terms = list(dict.fromkeys(name for event in epochs for name in event.loss_terms))
    rows = [",".join([METRICS_HEADER, *(f"{name}_loss" for name in terms)])]
    for event in epochs:
        val = "" if event.val_dice is None else f"{event.val_dice:.6f}"
        row = (
            f"{event.epoch},{event.train_loss:.6f},{val},{event.lr:.6g},{event.seconds:.3f},"
            f"{event.train_seconds:.3f},{event.data_seconds:.3f},{event.data_share:.4f}"
        )
        term_values = (f"{event.loss_terms[name]:.6f}" if name in event.loss_terms else "" for name in terms)
        rows.append(",".join([row, *term_values]))
    return "\n".join(rows) + "\n"


def _terms_text(terms: dict[str, float]) -> str:
    """`(N-cut 0.1234, reconstruction (MSE) 0.0101, ...)` for the epoch's log line; empty for one term."""
    if not terms:
        return ""
    return (
        " (" + ", ".join(f"{TERM_NAMES.get(name, name)} {value:.4f}" for name, value in terms.items()) + ")"
    )


def log_event(event: Event) -> None:
    """The human log: one line per epoch and per improvement, one at the end."""
    if isinstance(event, ValidationEnd) and event.improved:
        choice = event.choice
        at = ""
        if choice is not None:
            at = f" at threshold {choice.threshold:.2f} ({choice.dice_at_half:.4f} at 0.5)"
        log.info("epoch %d: validation Dice %.4f%s, best so far: saved best.pth", event.epoch, event.dice, at)
    elif isinstance(event, EpochEnd):
        dice = "" if event.val_dice is None else f"  val Dice {event.val_dice:.4f}"
        log.info(
            "epoch %d/%d  loss %.4f%s%s  lr %.3g  %.1f s (data wait %.1f s, %.0f%% of training)",
            event.epoch,
            event.epochs,
            event.train_loss,
            _terms_text(event.loss_terms),
            dice,
            event.lr,
            event.seconds,
            event.data_seconds,
            100 * event.data_share,
        )
    elif isinstance(event, RunEnd):
        s = event.summary
        ended = event.status if event.status == "completed" else f"{event.status} ({s['reason']})"
        log.info(
            "run %s after %d epoch(s) in %.1f s: %s, %s patches/s",
            ended,
            s["epochs_completed"],
            s["seconds"],
            best_dice_text(s),
            s["patches_per_second"],
        )
        tuned = threshold_text(s)
        if tuned:
            log.info(tuned)


class RunRecorder:
    """Keeps the run folder current after every epoch, so a run cut short still documents itself."""

    def __init__(self, run_dir: Path, make_zip: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.make_zip = make_zip
        self.epochs: list[EpochEnd] = []
        self.curves = CurveHistory()
        self.finished = False  # summary.json says how the run ended (not `running`)

    def __call__(self, event: Event) -> None:
        self.curves(event)
        if isinstance(event, RunStarted):
            write_json(self.run_dir / "summary.json", {"status": "running"})
            self.epochs.extend(event.history)  # a resumed run continues the same table
            self._write_metrics()
        elif isinstance(event, EpochEnd):
            self.epochs.append(event)
            self._write_metrics()
            if event.val_dice is not None and len(self.curves.dices) >= 2:
                self._plot(self.run_dir / "plots" / f"curves_epoch_{event.epoch:04d}.png")
        elif isinstance(event, RunEnd):
            self._finish(event)

    def _write_metrics(self) -> None:
        write_text(self.run_dir / "metrics.csv", metrics_table(self.epochs))

    def _plot(self, path: Path) -> None:
        from voxseg.training.plots import save_training_curves

        path.parent.mkdir(exist_ok=True)
        save_training_curves(path, self.curves)

    def _finish(self, event: RunEnd) -> None:
        if self.curves.losses:
            self._plot(self.run_dir / "plots" / "training_curves.png")
        if self.make_zip:
            event.summary["zip"] = str(self.run_dir.with_name(self.run_dir.name + ".zip"))
        self.write_summary(event.summary)
        if self.make_zip:
            zip_folder(self.run_dir)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """The final summary.json: the engine's at RunEnd, or the session's for a run that ended
        before the engine could report it."""
        write_json(self.run_dir / "summary.json", summary)
        self.finished = True
