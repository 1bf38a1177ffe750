"""Which prediction goes with which ground truth, for `voxseg evaluate`: by name, never by sort order.

Predictions are the files `voxseg predict` writes, `<name>_mask.tif` and/or `<name>_labels.tif`
(`_prob` is not scored; `_objects.csv` is no volume). Ground truths are named like training labels:
`<name>.tif` or `<name>` plus a label suffix, or as `--label-name` says (`mask_{name}`). A user
often predicts a few volumes of an annotated set, so the files of either side without a partner
are skipped (and listed) unless `strict`; files that are no prediction at all are always refused, and
so are a volume's files stamped by different predictions (`provenance`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from voxseg.data.discovery import label_keys, list_volumes, listing, naming_hint
from voxseg.errors import DataError
from voxseg.inference.paths import OUTPUT_SUFFIXES
from voxseg.inference.provenance import check_same_prediction
from voxseg.io.formats import stem

#: `<name>_<kind>` of predict's outputs: mask, labels, prob; only `mask` and `labels` are scored
PRED_KINDS = tuple(suffix.removeprefix("_") for suffix in OUTPUT_SUFFIXES.values())
#: files of each side named when nothing pairs
_MAX_SHOWN = 3


@dataclass(frozen=True)
class EvalPair:
    """A ground truth and the prediction files of the same volume (at least one of mask, labels)."""

    name: str
    truth: Path
    mask: Path | None = None
    labels: Path | None = None
    truth_key: str | None = None  # the truth's dataset in an HDF5 file or Zarr group

    def __post_init__(self) -> None:
        if self.mask is None and self.labels is None:
            raise ValueError(f"{self.name}: a prediction needs a mask or labels file")

    @property
    def has_instances(self) -> bool:
        return self.labels is not None


@dataclass(frozen=True)
class Pairing:
    """The pairs to score, and the files skipped because the other side has no partner for them."""

    pairs: Sequence[EvalPair]
    truths_without_prediction: Sequence[Path] = ()
    predictions_without_truth: Sequence[Path] = ()


def _split_prediction(path: Path) -> tuple[str, str] | None:
    """(`<name>`, kind) of `<name>_<kind>.tif` (or .zarr, .h5), or None for a file predict does not write."""
    base, sep, kind = stem(path).rpartition("_")
    if not sep or not base or kind.lower() not in PRED_KINDS:
        return None
    return base, kind.lower()


def pair_predictions(
    pred_dir: Path,
    labels_dir: Path,
    label_key: str | None = None,
    *,
    label_name: str | None = None,
    strict: bool = False,
) -> Pairing:
    """Pair the ground truths in `labels_dir` with their predictions in `pred_dir`, by name.

    Names are compared case-insensitively, as `voxseg.data.discovery` does for training data;
    `label_name` is `--label-name`'s pattern. Raises DataError (one line, naming the files and
    folders) for missing or empty folders, files that are not predictions, names that match twice,
    when nothing pairs, and with `strict` for any file left without a partner.
    """
    pred_dir, labels_dir = Path(pred_dir), Path(labels_dir)
    predictions = list_volumes(pred_dir, "--pred")
    truths = list_volumes(labels_dir, "--labels")
    if pred_dir.resolve() == labels_dir.resolve():
        raise DataError(f"--pred and --labels are the same folder {pred_dir}; keep predictions apart")

    groups: dict[str, dict[str, Path]] = {}  # lower-case name -> kind -> file
    names: dict[str, str] = {}  # lower-case name -> name as written
    strangers = []
    for path in predictions:
        split = _split_prediction(path)
        if split is None:
            strangers.append(path)
            continue
        base, kind = split
        group = groups.setdefault(base.lower(), {})
        if kind in group:
            raise DataError(
                f"--pred: {group[kind].name} and {path.name} in {pred_dir} are the same prediction"
            )
        group[kind] = path
        names.setdefault(base.lower(), base)
    scorable = {key for key, group in groups.items() if "mask" in group or "labels" in group}
    prob_only = sorted(
        path for key, group in groups.items() if key not in scorable for path in group.values()
    )

    matched: dict[str, Path] = {}  # prediction name -> ground truth
    unmatched_truths = []
    for truth in truths:
        key = next((k for k in label_keys(truth, label_name) if k in scorable), None)
        if key is None:
            unmatched_truths.append(truth)
        elif key in matched:
            raise DataError(
                f"--labels: {matched[key].name} and {truth.name} in {labels_dir} both match "
                f"the prediction {names[key]} in {pred_dir}"
            )
        else:
            matched[key] = truth
    unmatched_keys = sorted(scorable - matched.keys())
    unmatched_predictions = sorted(p for key in unmatched_keys for p in groups[key].values())
    hint = naming_hint(label_name, [names[key] for key in unmatched_keys], unmatched_truths)

    problems = []
    if scorable and not matched:
        shown_predictions = listing(unmatched_predictions, _MAX_SHOWN)
        problems.append(
            f"no prediction in {pred_dir} has a ground truth in {labels_dir}: predictions "
            f"{shown_predictions} vs ground truths {listing(unmatched_truths, _MAX_SHOWN)}"
        )
    elif strict:
        if unmatched_truths:
            problems.append(
                f"ground truths without a prediction in {pred_dir} (--strict): {listing(unmatched_truths)}"
            )
        if unmatched_predictions:
            problems.append(
                f"predictions without a ground truth in {labels_dir} (--strict): "
                f"{listing(unmatched_predictions)}"
            )
    unpaired = bool(problems)
    if prob_only:
        problems.append(f"probabilities without a _mask or _labels file in {pred_dir}: {listing(prob_only)}")
    if strangers:
        problems.append(
            f"files in {pred_dir} that are not predictions (<name>_mask.tif or <name>_labels.tif): "
            f"{listing(strangers)}"
        )
    if problems:
        raise DataError("; ".join(problems) + (hint if unpaired else ""))

    pairs = [
        EvalPair(names[key], truth, groups[key].get("mask"), groups[key].get("labels"), label_key)
        for key, truth in matched.items()
    ]
    for pair in pairs:  # never one prediction's mask scored with another's instances
        table = pred_dir / f"{pair.name}_objects.csv"
        files = [path for path in (pair.mask, pair.labels) if path is not None]
        check_same_prediction(files + [table] if table.exists() else files)
    return Pairing(sorted(pairs, key=lambda pair: pair.truth), unmatched_truths, unmatched_predictions)
