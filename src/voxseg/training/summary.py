"""A run's summary (summary.json, the RunEnd event) and the sentence every face says about it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voxseg.training.progress import RunProgress

if TYPE_CHECKING:
    from voxseg.training.setup import PreparedRun


def run_summary(
    status: str,
    error: str | None,
    progress: RunProgress,
    seconds: float,
    prepared: PreparedRun,
    workers: int | None,
) -> dict[str, Any]:
    """The outcome, the figures a user compares runs by, and what the run was."""
    train_seconds = progress.train_seconds
    config = prepared.config
    return {
        "status": status,
        "best_val_dice": progress.best_dice if progress.best_epoch else None,
        "best_epoch": progress.best_epoch or None,
        "threshold": progress.threshold,  # voxseg predict uses it with this run's weights
        "threshold_dice": progress.threshold_dice,
        "epochs_completed": progress.epochs_completed,
        "epochs_planned": config.epochs,
        "stopped_early": progress.stopped_early,
        "model": config.model,
        "loss": config.loss,
        "device": str(prepared.device),
        "patch_size": list(prepared.window),
        # prediction resamples to the training voxels when the run did (--resample isotropic)
        "resample": config.resample,
        "voxel_size_um": None if prepared.voxel_size is None else list(prepared.voxel_size),
        "precision": prepared.precision.name,
        "workers": workers,
        "fast_kernels": config.fast_kernels,
        "train_volumes": [v.name for v in prepared.train_volumes],
        "val_volumes": [v.name for v in prepared.val_volumes],
        "seconds": round(seconds, 3),
        "patches_per_second": round(progress.patches_seen / train_seconds, 4) if train_seconds else None,
        "patches_seen": progress.patches_seen,
        "data_wait_share": round(progress.data_seconds / train_seconds, 4) if train_seconds else None,
        "weights": {"best": "best.pth" if progress.best_epoch else None, "last": "last.pth"},
        "error": error,
    }


def best_dice_text(summary: dict[str, Any]) -> str:
    """`best validation Dice 0.9123 (epoch 7)`, or `no validation yet`: the log, the CLI and napari."""
    best = summary.get("best_val_dice")
    if best is None:
        return "no validation yet"
    return f"best validation Dice {best:.4f} (epoch {summary['best_epoch']})"


def threshold_text(summary: dict[str, Any]) -> str | None:
    """`threshold 0.40 tuned on validation: Dice 0.9187 (0.9123 at 0.5)`, for the log; None before
    any validation."""
    if summary.get("threshold") is None:
        return None
    return (
        f"threshold {summary['threshold']:.2f} tuned on validation: Dice {summary['threshold_dice']:.4f} "
        f"({summary['best_val_dice']:.4f} at 0.5); voxseg predict uses it"
    )
