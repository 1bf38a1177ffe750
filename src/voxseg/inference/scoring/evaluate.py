"""Score predictions against ground truth: what `voxseg evaluate --pred DIR --labels DIR [--json FILE]` runs.

Predictions are the files `voxseg predict` writes: `<name>_mask.tif` (foreground mask) and/or
`<name>_labels.tif` (instance labels), optionally `<name>_prob.tif` and `<name>_objects.csv`,
which are not scored. They are paired with ground truths by name (`voxseg.inference.scoring.pairing`);
the files of either side without a partner are skipped, and listed in the result.

Per volume:

* `dice`, `iou` of the foreground (every voxel > 0): the prediction's `_mask` when there is one
  (the network's semantic output, as training validation scores it), else its `_labels` > 0;
* when the prediction has instance labels (`_labels`), object matching as StarDist's
  (see `voxseg.inference.scoring.metrics`): precision/recall/F1 at IoU 0.5 and F1 averaged over the IoU
  thresholds 0.5, 0.55, ..., 0.95; and which error the wrong objects are, `split`, `merged`,
  `missed`, `spurious` (at IoU 0.5; the rules: `voxseg.inference.scoring.metrics`), so a user sees whether
  to fix the seeds (split, merged) or the mask and shapes (missed, spurious, a low
  `mean_matched_iou@0.5`). A mask-only prediction gets no instance metrics (its keys are
  `null`): evaluation scores the objects predict found, it does not make up its own.
  The ground truth is read as instance labels; one with a single id (a binary mask, 0/1 or 0/255)
  but several separate objects triggers a warning, since it is then scored as a single object.

Overall:

* `dice`, `iou`: the mean over volumes (as the validation Dice of training is); `dice_pooled`,
  `iou_pooled`: voxel-weighted, from the foreground voxels summed over volumes;
* instance metrics: object counts (tp, fp, fn at each threshold; split, merged, missed, spurious)
  summed over the volumes that have instance labels, then precision/recall/F1 from the sums, so
  every object weighs the same; the F1 average is the mean over thresholds of these pooled F1s.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from voxseg.data.checks import axes_order_hint, check_image, check_label, read_volume
from voxseg.errors import DataError, shorten_list
from voxseg.inference.scoring.metrics import (
    THRESHOLDS,
    Matching,
    combine,
    dice_from_counts,
    f1_mean,
    instance_scores,
    iou_from_counts,
    overlap_counts,
)
from voxseg.inference.scoring.pairing import EvalPair, Pairing
from voxseg.runtime.files import atomic_write

log = logging.getLogger(__name__)

F1_MEAN_KEY = "f1_mean_0.5:0.95"
#: what the objects that are wrong at IoU 0.5 are: too many seeds, too few, or the mask's errors
ERROR_KEYS = ("split", "merged", "missed", "spurious")
#: the instance keys of a volume and of the overall result (null without instance labels)
INSTANCE_KEYS = (
    "n_pred",
    "n_true",
    "tp@0.5",
    "fp@0.5",
    "fn@0.5",
    "precision@0.5",
    "recall@0.5",
    "f1@0.5",
    "mean_matched_iou@0.5",
    F1_MEAN_KEY,
    "f1_by_threshold",
    *ERROR_KEYS,
)
_FOREGROUND_KEYS = ("foreground_both", "foreground_pred", "foreground_true")
_MAX_LISTED = 10


def _read_same_shape(path: Path, truth_path: Path, shape: tuple[int, ...]) -> np.ndarray:
    array = read_volume(path)
    if array.shape != shape:
        raise DataError(
            f"{path}: shape {array.shape} does not match its ground truth {truth_path} {shape}"
            f"{axes_order_hint(array.shape, shape)}"
        )
    return array


def _as_labels(path: Path, array: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer labels (check_label's rules: integral, >= 0, finite) and its warnings."""
    check_label(path, array)
    warnings = [] if array.any() else [f"{path}: label has no foreground voxels"]
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.int64)
    return array, warnings


def _instance_fields(matchings: dict[float, Matching] | None) -> dict[str, Any]:
    if matchings is None:
        return dict.fromkeys(INSTANCE_KEYS)
    at_half = matchings[0.5]
    return {
        "n_pred": at_half.n_pred,
        "n_true": at_half.n_true,
        "tp@0.5": at_half.tp,
        "fp@0.5": at_half.fp,
        "fn@0.5": at_half.fn,
        "precision@0.5": at_half.precision,
        "recall@0.5": at_half.recall,
        "f1@0.5": at_half.f1,
        "mean_matched_iou@0.5": at_half.mean_matched_iou,
        F1_MEAN_KEY: f1_mean(matchings),
        "f1_by_threshold": {f"{t:g}": m.f1 for t, m in matchings.items()},
        "split": at_half.split,
        "merged": at_half.merged,
        "missed": at_half.missed,
        "spurious": at_half.spurious,
    }


def _score_volume(pair: EvalPair) -> tuple[dict[str, Any], dict[float, Matching] | None, list[str]]:
    truth = read_volume(pair.truth, pair.truth_key)
    true_labels, warnings = _as_labels(pair.truth, truth)
    pred_labels = None
    if pair.labels is not None:
        pred_labels, _ = _as_labels(pair.labels, _read_same_shape(pair.labels, pair.truth, truth.shape))
    if pair.mask is not None:
        mask = _read_same_shape(pair.mask, pair.truth, truth.shape)
        check_image(pair.mask, mask)
        pred_mask = mask > 0
    else:
        pred_mask = pred_labels > 0
    both, n_pred_voxels, n_true_voxels = overlap_counts(pred_mask, true_labels > 0)
    del pred_mask

    matchings = None
    if pred_labels is not None:
        matchings = instance_scores(pred_labels, true_labels, THRESHOLDS)
        if matchings[THRESHOLDS[0]].n_true == 1:  # one id: instance labels, or a binary mask (0/1, 0/255)?
            _, pieces = ndimage.label(true_labels > 0)
            if pieces > 1:
                warnings.append(
                    f"{pair.truth}: a binary mask with {pieces} separate objects, not instance labels; "
                    f"its instance metrics score all its foreground as one object"
                )
    record = {
        "name": pair.name,
        "ground_truth": str(pair.truth),
        "mask_file": None if pair.mask is None else str(pair.mask),
        "labels_file": None if pair.labels is None else str(pair.labels),
        "shape": list(truth.shape),
        "foreground_pred": n_pred_voxels,
        "foreground_true": n_true_voxels,
        "foreground_both": both,
        "dice": dice_from_counts(both, n_pred_voxels, n_true_voxels),
        "iou": iou_from_counts(both, n_pred_voxels, n_true_voxels),
        "instance_metrics": matchings is not None,
        **_instance_fields(matchings),
    }
    return record, matchings, warnings


def evaluate(pairing: Pairing) -> dict[str, Any]:
    """Scores of every pair and overall, as a JSON-friendly dict (see the module docstring).

    `{"thresholds": [...], "volumes": [{...}, ...], "overall": {...}, "skipped": {...},
    "warnings": [...]}`; a volume without instance labels has `"instance_metrics": false` and null
    instance keys, and so has the overall result when no volume has instance labels. `skipped`
    lists the files not scored, `{"ground_truths": [...], "predictions": [...]}`, so a score is
    never read as covering files it left out.
    """
    pairs = pairing.pairs
    if not pairs:
        raise ValueError("no pairs to evaluate")
    volumes, per_volume_matchings, warnings = [], [], []
    for index, pair in enumerate(pairs, start=1):
        record, matchings, volume_warnings = _score_volume(pair)
        volumes.append(record)
        warnings += volume_warnings
        if matchings is not None:
            per_volume_matchings.append(matchings)
        log.info(f"evaluated {pair.name} ({index}/{len(pairs)}): dice {record['dice']:.4f}")

    both, n_pred, n_true = (sum(v[key] for v in volumes) for key in _FOREGROUND_KEYS)
    pooled = None
    if per_volume_matchings:
        pooled = {t: combine(m[t] for m in per_volume_matchings) for t in THRESHOLDS}
    overall = {
        "volumes": len(volumes),
        "instance_volumes": len(per_volume_matchings),
        "dice": float(np.mean([v["dice"] for v in volumes])),
        "iou": float(np.mean([v["iou"] for v in volumes])),
        "dice_pooled": dice_from_counts(both, n_pred, n_true),
        "iou_pooled": iou_from_counts(both, n_pred, n_true),
        **_instance_fields(pooled),
    }
    skipped = {
        "ground_truths": [str(path) for path in pairing.truths_without_prediction],
        "predictions": [str(path) for path in pairing.predictions_without_truth],
    }
    return {
        "thresholds": list(THRESHOLDS),
        "volumes": volumes,
        "overall": overall,
        "skipped": skipped,
        "warnings": warnings,
    }


def _cell(value: Any, width: int, digits: int = 3) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.{digits}f}"
    else:
        text = str(value)
    return text.rjust(width)


_ERRORS_TITLE = "split/merge/miss/spur"  # the ERROR_KEYS, short enough for one column
#: (title, key) of the table's columns; a tuple of keys is one column of their values joined by "/"
_COLUMNS: tuple[tuple[str, str | tuple[str, ...]], ...] = (
    ("dice", "dice"),
    ("iou", "iou"),
    ("P@0.5", "precision@0.5"),
    ("R@0.5", "recall@0.5"),
    ("F1@0.5", "f1@0.5"),
    ("F1 0.5:0.95", F1_MEAN_KEY),
    ("pred", "n_pred"),
    ("true", "n_true"),
    (_ERRORS_TITLE, ERROR_KEYS),
)


def _column_value(values: dict[str, Any], key: str | tuple[str, ...]) -> Any:
    if isinstance(key, str):
        return values[key]
    parts = [values[k] for k in key]
    return None if None in parts else "/".join(str(part) for part in parts)


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table for the console: one row per volume, then the overall row and any warnings."""
    rows = [(v["name"], v) for v in result["volumes"]] + [("overall", result["overall"])]
    name_width = max(len("volume"), *(len(name) for name, _ in rows))
    widths = [max(len(title), 6) for title, _ in _COLUMNS]
    header = "volume".ljust(name_width) + "".join(
        "  " + title.rjust(w) for (title, _), w in zip(_COLUMNS, widths, strict=True)
    )
    rule = "-" * len(header)
    lines = [header, rule]
    for index, (name, values) in enumerate(rows):
        if index == len(rows) - 1:
            lines.append(rule)
        cells = "".join(
            "  " + _cell(_column_value(values, key), w) for (_, key), w in zip(_COLUMNS, widths, strict=True)
        )
        lines.append(name.ljust(name_width) + cells)
    overall = result["overall"]
    notes = [f"overall: dice and iou are means over {overall['volumes']} volumes"]
    notes[0] += f" (voxel-weighted: dice {overall['dice_pooled']:.3f}, iou {overall['iou_pooled']:.3f})"
    if overall["instance_volumes"]:
        notes.append(
            f"instance scores (P, R, F1) count objects over the {overall['instance_volumes']} volumes "
            f"with instance labels; F1 0.5:0.95 is the mean F1 over IoU thresholds 0.5, 0.55, ..., 0.95"
        )
        notes.append(
            f"{_ERRORS_TITLE}: true nuclei cut in pieces, predicted objects over several nuclei (fix the "
            f"seeds); other nuclei and predictions unmatched at IoU 0.5 (fix the mask or the shapes; "
            f"mean IoU of the matched pairs: {overall['mean_matched_iou@0.5']:.3f})"
        )
    mask_only = [v["name"] for v in result["volumes"] if not v["instance_metrics"]]
    if mask_only:
        notes.append(
            "no instance labels (<name>_labels.tif), so no instance scores, for: "
            + shorten_list(mask_only, _MAX_LISTED)
        )
    notes += _skipped_notes(result.get("skipped", {}))
    notes += [f"warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines + [""] + notes)


def _skipped_notes(skipped: dict[str, list[str]]) -> list[str]:
    """`skipped: ...` lines naming the files left out of the scores (`--strict` refuses them)."""
    notes = []
    for key, what in (
        ("ground_truths", "ground truth(s) without a prediction"),
        ("predictions", "prediction file(s) without a ground truth"),
    ):
        paths = skipped.get(key, [])
        if paths:
            names = shorten_list([Path(path).name for path in paths], _MAX_LISTED)
            notes.append(f"skipped {len(paths)} {what} (--strict refuses them): {names}")
    return notes


def write_json(path: Path, result: dict[str, Any], overwrite: bool = False) -> None:
    """Write `result` as JSON atomically (a temporary file renamed into place); an existing file only
    with `overwrite`."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"--json: {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise DataError(f"--json: {path} already exists; give --overwrite to replace it")
    if not path.parent.is_dir():
        raise DataError(f"--json: folder {path.parent} does not exist")
    text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
