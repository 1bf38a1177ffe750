"""The foreground threshold of a finished run, tuned on its validation volumes on demand.

Runs trained since the threshold is tuned during training already carry it in summary.json; this
computes it for older runs (or again, e.g. after their data changed): the run's best weights on
its own validation volumes, the Dice at every cut point, the best kept in summary.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.accel import accelerated
from voxseg.config import TrainConfig
from voxseg.data.labels import scored
from voxseg.errors import ConfigError
from voxseg.inference.model.sliding import blended_probability, window_predictor
from voxseg.inference.model.trained import check_source
from voxseg.inference.scoring.metrics import dice_by_threshold
from voxseg.models.weights import load_trained_network
from voxseg.runtime.files import write_json
from voxseg.runtime.precision import autocast
from voxseg.training.setup import prepare_run
from voxseg.training.threshold_rule import choose_threshold

log = logging.getLogger("voxseg")


def tune_threshold(run_dir: Path) -> dict[str, Any]:
    """Tune and store the threshold of the run in `run_dir`; return its updated summary."""
    run_dir = Path(run_dir)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"RUN_DIR: {run_dir} is not a voxseg run folder (no config.yaml)")
    prepared = prepare_run(TrainConfig.from_yaml(saved), resume_dir=run_dir)
    _, weights, _, _ = check_source(run_dir, None)  # best.pth, else last.pth
    model, _ = load_trained_network(prepared.config.model, weights, "RUN_DIR")
    model.eval().to(prepared.device)
    curves = []
    config = prepared.config
    with accelerated(prepared.device, config.fast_kernels, False, config.threads) as acceleration:
        runner = acceleration.tune(model, mixed_precision=prepared.precision.dtype is not None)
        predict = window_predictor(
            runner, prepared.device, lambda: autocast(prepared.device, prepared.precision)
        )
        for volume in prepared.val_volumes:
            window, batch = prepared.window, 2 * config.batch_size
            probability = blended_probability(volume.image, window, predict, batch)[0]  # the foreground
            curves.append(dice_by_threshold(*scored(probability, volume.label)))
    choice = choose_threshold(np.mean(curves, axis=0), prepared.val_objects, prepared.partitions)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary.update(
        threshold=choice.threshold,
        threshold_dice=choice.dice,
        threshold_reason=choice.reason,
        val_dice_at_half=choice.dice_at_half,
    )
    write_json(summary_path, summary)
    log.info(
        "%s: threshold %.2f on %d validation volume(s) (%s), written to %s",
        weights.name,
        choice.threshold,
        len(curves),
        choice.reason,
        summary_path,
    )
    return summary
