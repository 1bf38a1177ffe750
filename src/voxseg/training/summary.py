"""A run's summary (summary.json, the RunEnd event) and the sentence every face says about it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voxseg.training.progress import RunProgress

#: the reason of a stop nothing more is known of (`TrainingSession.request_stop`, a stop event set)
STOP_REQUESTED = "stop requested"

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
        "status": status,  # completed | stopped | failed (`running` until the run ends)
        "reason": end_reason(status, error, progress, config.early_stop_patience, config.epochs),
        # the best checkpoint's validation Dice at the threshold voxseg predict uses with it
        "best_val_dice": progress.best_dice if progress.best_epoch else None,
        "best_epoch": progress.best_epoch or None,
        "threshold": progress.threshold,
        "threshold_dice": progress.best_dice if progress.best_epoch else None,  # the same (older name)
        "threshold_reason": progress.threshold_reason,
        "val_dice_at_half": progress.best_dice_at_half,
        "epochs_completed": progress.epochs_completed,
        "epochs_planned": config.epochs,
        "stopped_early": progress.stopped_early,
        "model": config.model,
        "loss": prepared.loss_description,
        # what the validation Dice is measured against: labels, or (WNet3D without validation labels)
        # the partitions the validation volumes gave themselves
        "validated_against": prepared.validated_against,
        # WNet3D: the class whose probability is the foreground (the brightest), as best.pth says
        "foreground_class": _foreground_class(prepared) if prepared.self_supervision else None,
        "device": str(prepared.device),
        "patch_size": list(prepared.window),
        # prediction resamples to the training voxels when the run did (--resample isotropic)
        "resample": config.resample,
        "voxel_size_um": None if prepared.voxel_size is None else list(prepared.voxel_size),
        # the training labels' typical object radius (voxel_size_um's unit): scales predict's watershed
        "object_radius": prepared.object_radius,
        # the network's outputs in channel order: `distance` lets predict seed one object per centre
        "outputs": list(prepared.outputs),
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


def end_reason(status: str, error: str | None, progress: RunProgress, patience: int, epochs: int) -> str:
    """Why the run ended, in one line. A stop is `stop requested` to the engine; the session names
    what asked (SIGTERM, SIGINT, KeyboardInterrupt...)."""
    if status == "failed":
        return (error or "unknown error").partition("\n")[0]
    if status == "stopped":
        return STOP_REQUESTED
    if progress.stopped_early:
        return f"early stop: no better validation Dice in {patience} validation(s)"
    return f"all {epochs} epoch(s) trained"


def best_dice_text(summary: dict[str, Any]) -> str:
    """`best validation Dice 0.9123 at threshold 0.50 (epoch 7)`, or `no validation yet`: the log,
    the CLI and napari. The Dice of what `voxseg predict` writes with the run's weights."""
    best = summary.get("best_val_dice")
    if best is None:
        return "no validation yet"
    threshold = summary.get("threshold")
    at = "" if threshold is None else f" at threshold {threshold:.2f}"
    own = summary.get("validated_against") == "partitions"
    against = " against the volumes' own partitions" if own else ""
    return f"best validation Dice {best:.4f}{against}{at} (epoch {summary['best_epoch']})"


def threshold_text(summary: dict[str, Any]) -> str | None:
    """`threshold 0.40 (tuned: ...)`: why the run predicts with its threshold; None before any
    validation."""
    if summary.get("threshold") is None:
        return None
    return f"threshold {summary['threshold']:.2f} ({summary.get('threshold_reason')}); voxseg predict uses it"


def _foreground_class(prepared: PreparedRun) -> int | None:
    """The class a WNet3D run's weights make the foreground: best.pth's, else last.pth's (a run
    stopped before it validated); None before either exists."""
    from voxseg.models.weights import read_state_dict

    for name in ("best.pth", "last.pth"):
        path = prepared.run_dir / name
        if path.is_file():
            return int(read_state_dict(path)["foreground"])
    return None
