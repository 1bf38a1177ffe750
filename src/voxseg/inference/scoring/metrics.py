"""Segmentation metrics on numpy arrays: Dice/IoU of masks, and object matching of instance labels.

Pure numpy/scipy (no torch), so evaluation can score files written by any tool.

Instance matching follows StarDist's `stardist.matching.matching` (Schmidt et al. 2018, Weigert et
al. 2020; BSD-3-Clause), re-implemented here, not copied:

* the IoU of every (predicted, true) object pair comes from the contingency table of the two label
  images (voxel counts of each pair of ids); background (0) is never an object;
* a predicted and a true object may be matched when their IoU is >= the threshold (StarDist uses
  `>=` too), each object at most once;
* among all such one-to-one matchings, the one with the most pairs is chosen, ties broken by the
  larger sum of matched IoUs (StarDist's cost `-(iou >= t) - iou / (2 n)` for
  `scipy.optimize.linear_sum_assignment`). For a threshold >= 0.5 an object can have at most one
  partner above the threshold (except for exact ties at 0.5), so the matching is unique anyway;
* tp = matched pairs, fp = n_pred - tp, fn = n_true - tp, precision = tp / n_pred,
  recall = tp / n_true, f1 = 2 tp / (n_pred + n_true), mean matched IoU = sum of matched IoUs / tp.

Differences from StarDist: an empty denominator gives 1.0 here, not 0.0 (no predicted objects: no
false claims, precision 1.0; no true objects: nothing missed, recall 1.0; neither: F1 1.0, as two
empty masks have Dice 1.0), so an image correctly left empty scores as perfect. The mean matched IoU
with no match is 0.0, as in StarDist. StarDist's tie-break also sums the IoUs of assigned pairs
below the threshold; this one only those of matched pairs, which can change which pairs are
matched only in exact ties below 0.5, never how many. The assignment is solved separately on each
connected group of candidate pairs, so thousands of objects cost no dense n_pred × n_true matrix.

Which error it is (`Matching.split`, `merged`, `missed`, `spurious`): F1 says how many objects are
wrong, these say what to fix. An object lies *mostly inside* another when more than half of its own
voxels are in it (the Cell Tracking Challenge's rule for a detected object, used both ways), so it
lies mostly inside one object at most:

* split: a true object that two or more predicted objects lie mostly inside (over-segmentation:
  too many seeds), whether or not one of the pieces also matches it;
* merged: a predicted object that two or more true objects lie mostly inside (under-segmentation:
  too few seeds);
* missed: a true object not matched at the threshold, not split and not lying mostly inside a
  merged object; spurious: a predicted object not matched, not merged and not lying mostly inside a
  split object. These are errors of the mask or the shapes (a nucleus not found, debris, or an
  object so misshapen that it matches nothing, which counts once missed and once spurious).

So fn = missed + the unmatched true objects of splits and merges, and fp = spurious + the unmatched
predicted pieces of splits and merged objects: many splits or merges call for other seeds (the
watershed's), many missed or spurious objects, or a low mean matched IoU, for a better mask. All
four come from the same contingency table as the IoUs, with no second pass over the voxels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components

#: IoU thresholds of the COCO-style average: 0.5, 0.55, ..., 0.95
THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
#: probability thresholds tried when a run tunes its foreground threshold on validation
CUT_POINTS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


def dice_by_threshold(
    probability: np.ndarray, truth: np.ndarray, cuts: Sequence[float] = CUT_POINTS
) -> np.ndarray:
    """Dice of `probability >= t` against `truth` for every t in `cuts`, from two histograms (one
    pass over the voxels, however many thresholds). Empty prediction and truth agree (1.0)."""
    edges = np.concatenate([[-np.inf], np.asarray(cuts, np.float64), [np.inf]])
    values = np.asarray(probability, np.float32).ravel()
    foreground = np.asarray(truth).ravel() > 0
    above_all = np.cumsum(np.histogram(values, edges)[0][::-1])[::-1][1:]
    above_true = np.cumsum(np.histogram(values[foreground], edges)[0][::-1])[::-1][1:]
    total = above_all + int(foreground.sum())
    return np.where(total > 0, 2 * above_true / np.maximum(total, 1), 1.0)


def best_threshold(dices: Sequence[float], cuts: Sequence[float] = CUT_POINTS) -> tuple[float, float]:
    """(threshold, Dice) of the best cut; ties go to the cut nearest 0.5."""
    order = sorted(range(len(cuts)), key=lambda i: (-dices[i], abs(cuts[i] - 0.5)))
    return float(cuts[order[0]]), float(dices[order[0]])


def _as_masks(pred_mask: np.ndarray, true_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, true = np.asarray(pred_mask), np.asarray(true_mask)
    if pred.shape != true.shape:
        raise ValueError(f"mask shapes differ: prediction {pred.shape}, ground truth {true.shape}")
    return pred.astype(bool, copy=False), true.astype(bool, copy=False)


def overlap_counts(pred_mask: np.ndarray, true_mask: np.ndarray) -> tuple[int, int, int]:
    """(|pred ∩ true|, |pred|, |true|) of two masks (any non-zero voxel is foreground)."""
    pred, true = _as_masks(pred_mask, true_mask)
    both = int(np.count_nonzero(pred & true))
    return both, int(np.count_nonzero(pred)), int(np.count_nonzero(true))


def dice_from_counts(both: int, n_pred: int, n_true: int) -> float:
    """2|A∩B| / (|A| + |B|); 1.0 when both masks are empty."""
    total = n_pred + n_true
    return 1.0 if total == 0 else 2.0 * both / total


def iou_from_counts(both: int, n_pred: int, n_true: int) -> float:
    """|A∩B| / |A∪B|; 1.0 when both masks are empty."""
    union = n_pred + n_true - both
    return 1.0 if union == 0 else both / union


def dice(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """Dice of two masks of the same shape (non-zero = foreground); two empty masks agree: 1.0."""
    return dice_from_counts(*overlap_counts(pred_mask, true_mask))


def iou(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """Intersection over union (Jaccard) of two masks; two empty masks agree: 1.0."""
    return iou_from_counts(*overlap_counts(pred_mask, true_mask))


@dataclass(frozen=True)
class Matching:
    """Counts and scores of a one-to-one matching of objects at one IoU threshold, and which error
    the unmatched objects are (the rules: the module docstring)."""

    threshold: float
    tp: int
    fp: int
    fn: int
    n_pred: int
    n_true: int
    #: mean IoU of the matched pairs (0.0 when nothing matched)
    mean_matched_iou: float
    #: true objects in two or more predicted pieces (too many seeds)
    split: int = 0
    #: predicted objects covering two or more true objects (too few seeds)
    merged: int = 0
    #: unmatched true objects that are in no split or merge (not found, or misshapen)
    missed: int = 0
    #: unmatched predicted objects that are in no split or merge (debris, or misshapen)
    spurious: int = 0

    @property
    def precision(self) -> float:
        return 1.0 if self.n_pred == 0 else self.tp / self.n_pred

    @property
    def recall(self) -> float:
        return 1.0 if self.n_true == 0 else self.tp / self.n_true

    @property
    def f1(self) -> float:
        total = self.n_pred + self.n_true
        return 1.0 if total == 0 else 2.0 * self.tp / total

    def as_dict(self) -> dict[str, float | int]:
        """All fields and scores, JSON-friendly."""
        return {
            "threshold": self.threshold,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "mean_matched_iou": self.mean_matched_iou,
            "n_pred": self.n_pred,
            "n_true": self.n_true,
            "split": self.split,
            "merged": self.merged,
            "missed": self.missed,
            "spurious": self.spurious,
        }


def combine(matchings: Iterable[Matching]) -> Matching:
    """Pool the matchings of several images at one threshold: counts (errors too) summed, IoU weighted
    by matches."""
    matchings = list(matchings)
    if not matchings:
        raise ValueError("no matchings to combine")
    thresholds = {m.threshold for m in matchings}
    if len(thresholds) != 1:
        raise ValueError(f"cannot combine matchings at different thresholds {sorted(thresholds)}")
    tp = sum(m.tp for m in matchings)
    iou_sum = sum(m.mean_matched_iou * m.tp for m in matchings)
    return Matching(
        threshold=matchings[0].threshold,
        tp=tp,
        fp=sum(m.fp for m in matchings),
        fn=sum(m.fn for m in matchings),
        n_pred=sum(m.n_pred for m in matchings),
        n_true=sum(m.n_true for m in matchings),
        mean_matched_iou=iou_sum / tp if tp else 0.0,
        split=sum(m.split for m in matchings),
        merged=sum(m.merged for m in matchings),
        missed=sum(m.missed for m in matchings),
        spurious=sum(m.spurious for m in matchings),
    )


def f1_mean(matchings: Mapping[float, Matching] | Iterable[Matching]) -> float:
    """F1 averaged over thresholds (over 0.5:0.95 for `instance_scores`' default)."""
    values = list(matchings.values()) if isinstance(matchings, Mapping) else list(matchings)
    if not values:
        raise ValueError("no matchings to average")
    return float(np.mean([m.f1 for m in values]))


@dataclass(frozen=True)
class _Overlaps:
    """The non-zero IoUs between predicted and true objects, as a sparse list of pairs, and the
    objects that splits and merges account for (independent of any IoU threshold)."""

    n_pred: int
    n_true: int
    pred_index: np.ndarray  # 0..n_pred-1
    true_index: np.ndarray  # 0..n_true-1
    iou: np.ndarray
    split: int
    merged: int
    pred_in_split_or_merge: np.ndarray  # bool, n_pred: a merged object or a piece of a split one
    true_in_split_or_merge: np.ndarray  # bool, n_true: a split object or a piece of a merged one


def _check_labels(name: str, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels.view(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} labels must be integers, got {labels.dtype}")
    if np.issubdtype(labels.dtype, np.signedinteger) and labels.size and labels.min() < 0:
        raise ValueError(f"{name} labels must be >= 0 (found {labels.min()})")
    return labels


def _dense_ids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids renumbered 0..k (0 stays background, objects 1..k in id order) and each object's size."""
    flat = labels.ravel()
    top = int(flat.max()) if flat.size else 0
    if top <= max(2**20, flat.size):  # a lookup table no larger than the image: linear time
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=1)
        ids = np.flatnonzero(counts[1:]) + 1
        table = np.zeros(top + 1, np.int64 if ids.size >= 2**31 else np.int32)
        table[ids] = np.arange(1, ids.size + 1)
        return table[flat], counts[ids]
    ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)  # huge ids: sort
    if ids[0] != 0:
        return inverse.ravel() + 1, counts
    return inverse.ravel(), counts[1:]


def _overlaps(pred_labels: np.ndarray, true_labels: np.ndarray) -> _Overlaps:
    """IoU of every overlapping (predicted, true) pair from the contingency table of the two images."""
    pred = _check_labels("predicted", pred_labels)
    true = _check_labels("true", true_labels)
    if pred.shape != true.shape:
        raise ValueError(f"label shapes differ: prediction {pred.shape}, ground truth {true.shape}")
    pred_ids, pred_sizes = _dense_ids(pred)
    true_ids, true_sizes = _dense_ids(true)
    n_pred, n_true = pred_sizes.size, true_sizes.size
    both = (pred_ids > 0) & (true_ids > 0)
    rows, cols = pred_ids[both] - 1, true_ids[both] - 1
    # the contingency table of foreground pairs: duplicates (voxels of one pair) are summed
    table = sparse.coo_matrix((np.ones(rows.size, np.int64), (rows, cols)), shape=(n_pred, n_true))
    table = table.tocsr().tocoo()  # to CSR sums the duplicates
    rows, cols = table.row.astype(np.int64), table.col.astype(np.int64)
    inter = table.data.astype(np.float64)
    union = pred_sizes[rows] + true_sizes[cols] - inter
    # more than half of an object's own voxels: each object lies mostly inside one partner at most
    pred_inside = 2 * inter > pred_sizes[rows]
    true_inside = 2 * inter > true_sizes[cols]
    split_true = np.bincount(cols[pred_inside], minlength=n_true) >= 2
    merged_pred = np.bincount(rows[true_inside], minlength=n_pred) >= 2
    pred_involved = merged_pred.copy()
    pred_involved[rows[pred_inside & split_true[cols]]] = True
    true_involved = split_true.copy()
    true_involved[cols[true_inside & merged_pred[rows]]] = True
    return _Overlaps(
        n_pred=n_pred,
        n_true=n_true,
        pred_index=rows,
        true_index=cols,
        iou=inter / union,
        split=int(np.count_nonzero(split_true)),
        merged=int(np.count_nonzero(merged_pred)),
        pred_in_split_or_merge=pred_involved,
        true_in_split_or_merge=true_involved,
    )


def _match(overlaps: _Overlaps, threshold: float) -> Matching:
    """Maximum one-to-one matching among pairs with IoU >= threshold, ties broken by summed IoU."""
    keep = overlaps.iou >= threshold
    rows, cols, ious = overlaps.pred_index[keep], overlaps.true_index[keep], overlaps.iou[keep]
    matched_pred = np.zeros(overlaps.n_pred, bool)
    matched_true = np.zeros(overlaps.n_true, bool)
    iou_sum = 0.0
    if rows.size:
        # split the candidate pairs into connected groups (a bipartite graph: preds, then trues)
        n_nodes = overlaps.n_pred + overlaps.n_true
        graph = sparse.coo_matrix((np.ones(rows.size), (rows, cols + overlaps.n_pred)), shape=(n_nodes,) * 2)
        _, node_group = connected_components(graph, directed=False)
        group = node_group[rows]
        edges = np.bincount(group)
        single = edges[group] == 1  # a pair whose objects have no other candidate: matched as is
        matched_pred[rows[single]] = matched_true[cols[single]] = True
        iou_sum = float(ious[single].sum())
        rest = np.flatnonzero(~single)
        if rest.size:
            rest = rest[np.argsort(group[rest], kind="stable")]
            starts = np.flatnonzero(np.diff(group[rest], prepend=-1))
            for block in np.split(rest, starts[1:]):
                preds, trues, total = _assign(rows[block], cols[block], ious[block])
                matched_pred[preds] = matched_true[trues] = True
                iou_sum += total
    tp = int(np.count_nonzero(matched_pred))
    return Matching(
        threshold=float(threshold),
        tp=tp,
        fp=overlaps.n_pred - tp,
        fn=overlaps.n_true - tp,
        n_pred=overlaps.n_pred,
        n_true=overlaps.n_true,
        mean_matched_iou=iou_sum / tp if tp else 0.0,
        split=overlaps.split,
        merged=overlaps.merged,
        missed=int(np.count_nonzero(~matched_true & ~overlaps.true_in_split_or_merge)),
        spurious=int(np.count_nonzero(~matched_pred & ~overlaps.pred_in_split_or_merge)),
    )


def _assign(rows: np.ndarray, cols: np.ndarray, ious: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Most pairs, then largest IoU sum, in one group of candidate pairs (linear_sum_assignment): the
    matched predicted and true indices, and the sum of their IoUs."""
    row_ids, r = np.unique(rows, return_inverse=True)
    col_ids, c = np.unique(cols, return_inverse=True)
    size = min(row_ids.size, col_ids.size)
    # each candidate is worth 1 plus a tie-break below 1/(2 size): the IoUs of at most `size`
    # pairs add less than one pair, so a matching with more pairs always wins
    weight = np.zeros((row_ids.size, col_ids.size))
    weight[r, c] = 1.0 + ious / (2.0 * size)
    block = np.zeros_like(weight)
    block[r, c] = ious
    chosen_rows, chosen_cols = linear_sum_assignment(weight, maximize=True)
    chosen = weight[chosen_rows, chosen_cols] > 0  # pairs below the threshold fill up the square
    chosen_rows, chosen_cols = chosen_rows[chosen], chosen_cols[chosen]
    return row_ids[chosen_rows], col_ids[chosen_cols], float(block[chosen_rows, chosen_cols].sum())


def match_instances(pred_labels: np.ndarray, true_labels: np.ndarray, threshold: float = 0.5) -> Matching:
    """One-to-one matching of predicted and true objects at an IoU threshold (as StarDist's `matching`).

    Labels are integer images of the same shape; 0 is background, any other value an object id
    (ids need not be consecutive). The result also counts split, merged, missed and spurious objects.
    """
    return _match(_overlaps(pred_labels, true_labels), threshold)


def instance_scores(
    pred_labels: np.ndarray, true_labels: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
) -> dict[float, Matching]:
    """The matching at each threshold (the IoUs are computed once); `f1_mean(result)` averages F1."""
    if not len(thresholds):
        raise ValueError("no thresholds given")
    overlaps = _overlaps(pred_labels, true_labels)
    return {float(t): _match(overlaps, t) for t in thresholds}
