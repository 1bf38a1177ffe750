"""Dice/IoU of masks and StarDist-style object matching, checked on hand-made labels and by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from voxseg.inference.scoring.metrics import (
    THRESHOLDS,
    Matching,
    combine,
    dice,
    f1_mean,
    instance_scores,
    iou,
    match_instances,
)


def _strip(*runs: tuple[int, int, int], length: int = 40) -> np.ndarray:
    """A 1×1×length label volume with objects given as (id, start, stop) runs along x."""
    labels = np.zeros((1, 1, length), np.uint16)
    for ident, start, stop in runs:
        labels[0, 0, start:stop] = ident
    return labels


# ---------------------------------------------------------------------------------------------- masks


def test_dice_and_iou_of_empty_masks_agree() -> None:
    empty = np.zeros((3, 4, 5), bool)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0


def test_dice_and_iou_when_one_mask_is_empty() -> None:
    empty, full = np.zeros((3, 4, 5), bool), np.ones((3, 4, 5), bool)
    assert dice(empty, full) == 0.0 and iou(full, empty) == 0.0


def test_dice_and_iou_values() -> None:
    """|A| = 6, |B| = 4, |A∩B| = 2: Dice 4/10, IoU 2/8; any non-zero value is foreground."""
    a = _strip((1, 0, 6))
    b = _strip((7, 4, 8))
    assert dice(a, b) == pytest.approx(0.4)
    assert iou(a, b) == pytest.approx(0.25)
    assert dice(a, a) == 1.0 and iou(b.astype(np.float32) * 0.5, b) == 1.0


def test_mask_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        dice(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))


# ------------------------------------------------------------------------------------------- matching


def test_perfect_match_with_other_and_non_consecutive_ids() -> None:
    true = _strip((1, 0, 5), (2, 10, 15), (3, 20, 30))
    pred = _strip((900, 0, 5), (7, 10, 15), (65000, 20, 30))
    m = match_instances(pred, true)
    assert (m.tp, m.fp, m.fn, m.n_pred, m.n_true) == (3, 0, 0, 3, 3)
    assert m.precision == m.recall == m.f1 == m.mean_matched_iou == 1.0


def test_huge_ids_take_the_sorting_path() -> None:
    """Ids far above the voxel count are renumbered by sorting, with the same result."""
    true = _strip((1, 0, 5), (2, 10, 15))
    pred = _strip((1, 0, 5), (2, 10, 15)).astype(np.uint64)
    pred[pred == 1] = 2**40
    pred[pred == 2] = 2**63 + 5
    m = match_instances(pred, true)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)


def test_split_object() -> None:
    """One true object (10 voxels) split 6 + 4: the larger piece matches (IoU 0.6), the other is a fp."""
    true = _strip((1, 0, 10))
    pred = _strip((1, 0, 6), (2, 6, 10))
    m = match_instances(pred, true)
    assert (m.tp, m.fp, m.fn, m.n_pred, m.n_true) == (1, 1, 0, 2, 1)
    assert m.mean_matched_iou == pytest.approx(0.6)
    assert m.precision == 0.5 and m.recall == 1.0 and m.f1 == pytest.approx(2 / 3)


def test_merged_objects() -> None:
    """Two true objects (6 and 4 voxels) predicted as one: it matches the larger (IoU 0.6), one is missed."""
    true = _strip((1, 0, 6), (2, 6, 10))
    pred = _strip((5, 0, 10))
    m = match_instances(pred, true)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    assert m.mean_matched_iou == pytest.approx(0.6)


def test_missed_and_spurious_objects() -> None:
    true = _strip((1, 0, 5), (2, 10, 15))
    pred = _strip((1, 0, 5), (2, 30, 35))
    m = match_instances(pred, true)
    assert (m.tp, m.fp, m.fn) == (1, 1, 1)
    assert m.precision == m.recall == m.f1 == 0.5


def test_iou_exactly_one_half_matches_at_half_only() -> None:
    """IoU 5/10 = 0.5 is a match at threshold 0.5 (>=, as StarDist), not at 0.55."""
    true = _strip((1, 0, 10))
    pred = _strip((1, 0, 5))
    assert match_instances(pred, true, 0.5).tp == 1
    assert match_instances(pred, true, 0.55).tp == 0
    assert match_instances(pred, true, 0.5).mean_matched_iou == 0.5


def test_iou_just_below_one_half_does_not_match() -> None:
    """IoU 9/19 < 0.5 and 10/20 = 0.5, side by side."""
    true = _strip((1, 0, 19), length=60)
    pred = _strip((1, 0, 9), length=60)
    assert match_instances(pred, true).tp == 0
    true = _strip((1, 0, 20), length=60)
    pred = _strip((1, 0, 10), length=60)
    assert match_instances(pred, true).tp == 1


def test_tie_at_one_half_matches_once() -> None:
    """A prediction exactly twice as large as two true halves has IoU 0.5 with both: one match only."""
    true = _strip((1, 0, 5), (2, 5, 10))
    pred = _strip((3, 0, 10))
    m = match_instances(pred, true)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)


def test_low_threshold_maximises_the_number_of_matches() -> None:
    """Greedy by best IoU would pair A with T1 and leave B alone; the assignment pairs A-T2 and B-T1."""
    true = _strip((1, 0, 10), (2, 10, 20))
    pred = _strip((1, 4, 13), (2, 0, 3))  # A: 6/13 with T1, 3/16 with T2; B: 3/10 with T1
    m = match_instances(pred, true, threshold=0.15)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert m.mean_matched_iou == pytest.approx((3 / 16 + 3 / 10) / 2)
    assert match_instances(pred, true, threshold=0.5).tp == 0


def test_empty_images() -> None:
    empty = np.zeros((2, 3, 4), np.uint16)
    both_empty = match_instances(empty, empty)
    assert (both_empty.tp, both_empty.n_pred, both_empty.n_true) == (0, 0, 0)
    assert both_empty.precision == both_empty.recall == both_empty.f1 == 1.0
    objects = empty.copy()
    objects[0, 0, :2] = 4
    nothing_found = match_instances(empty, objects)
    assert (nothing_found.fn, nothing_found.recall, nothing_found.f1) == (1, 0.0, 0.0)
    assert nothing_found.precision == 1.0  # no predicted object is wrong
    assert _errors(both_empty) == (0, 0, 0, 0) and _errors(nothing_found) == (0, 0, 1, 0)
    all_wrong = match_instances(objects, empty)
    assert (all_wrong.fp, all_wrong.precision, all_wrong.f1) == (1, 0.0, 0.0)
    assert _errors(all_wrong) == (0, 0, 0, 1)


def test_bad_labels_are_refused() -> None:
    good = np.zeros((2, 2, 2), np.int32)
    with pytest.raises(ValueError, match="integers"):
        match_instances(good.astype(np.float32), good)
    with pytest.raises(ValueError, match=">= 0"):
        match_instances(good, good - 1)
    with pytest.raises(ValueError, match="shapes differ"):
        match_instances(good, np.zeros((2, 2, 3), np.int32))
    assert match_instances(good.astype(bool), good).f1 == 1.0


# --------------------------------------------------------------------------------- which error it is


def _errors(m: Matching) -> tuple[int, int, int, int]:
    return m.split, m.merged, m.missed, m.spurious


def test_perfect_match_has_no_errors() -> None:
    true = _strip((1, 0, 5), (2, 10, 15))
    m = match_instances(_strip((4, 0, 5), (9, 10, 15)), true)
    assert _errors(m) == (0, 0, 0, 0)


def test_split_object_is_a_split_not_a_spurious_object() -> None:
    """True 10 voxels in pieces of 6 and 4, both wholly inside it: one split; the 6 still matches."""
    m = match_instances(_strip((1, 0, 6), (2, 6, 10)), _strip((1, 0, 10)))
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert _errors(m) == (1, 0, 0, 0)


def test_split_in_three_without_a_match_is_not_missed() -> None:
    """Three pieces of 4 in a true 12: no IoU reaches 0.5, yet the true object is split, not missed."""
    m = match_instances(_strip((1, 0, 4), (2, 4, 8), (3, 8, 12)), _strip((7, 0, 12)))
    assert (m.tp, m.fp, m.fn) == (0, 3, 1)
    assert _errors(m) == (1, 0, 0, 0)


def test_merged_objects_are_a_merge_not_missed() -> None:
    """One prediction over two true objects (6 + 4): one merge; the 4 is not counted as missed."""
    m = match_instances(_strip((5, 0, 10)), _strip((1, 0, 6), (2, 6, 10)))
    assert (m.tp, m.fp, m.fn) == (1, 0, 1)
    assert _errors(m) == (0, 1, 0, 0)


def test_missed_object() -> None:
    m = match_instances(_strip((1, 0, 5)), _strip((1, 0, 5), (2, 10, 15)))
    assert (m.tp, m.fn) == (1, 1)
    assert _errors(m) == (0, 0, 1, 0)


def test_spurious_object() -> None:
    m = match_instances(_strip((1, 0, 5), (2, 30, 35)), _strip((1, 0, 5)))
    assert (m.tp, m.fp) == (1, 1)
    assert _errors(m) == (0, 0, 0, 1)


def test_misshapen_object_is_missed_and_spurious() -> None:
    """A prediction shifted off its nucleus (IoU 4/16, 4 of its 10 voxels inside): a shape error."""
    m = match_instances(_strip((1, 6, 16)), _strip((1, 0, 10)))
    assert (m.tp, m.fp, m.fn) == (0, 1, 1)
    assert _errors(m) == (0, 0, 1, 1)


def test_a_piece_must_lie_more_than_half_inside() -> None:
    """A second prediction with exactly half its voxels in the true object is spurious, not a split."""
    m = match_instances(_strip((1, 0, 9), (2, 8, 12)), _strip((1, 0, 10)))
    assert (m.tp, m.fp) == (1, 1)
    assert _errors(m) == (0, 0, 0, 1)
    m = match_instances(_strip((1, 0, 9), (2, 9, 12)), _strip((1, 0, 11)))  # 2 of its 3 voxels inside
    assert _errors(m) == (1, 0, 0, 0)


def test_all_errors_in_one_image_and_at_a_stricter_threshold() -> None:
    """A split, a merge, a missed and a spurious object beside a good match (IoU 0.8)."""
    true = _strip((1, 0, 10), (2, 12, 18), (3, 18, 22), (4, 25, 30), (5, 40, 50), length=70)
    pred = _strip((1, 0, 6), (2, 6, 10), (3, 12, 22), (4, 60, 65), (5, 40, 48), length=70)
    m = match_instances(pred, true)
    assert (m.tp, m.fp, m.fn) == (3, 2, 2)
    assert _errors(m) == (1, 1, 1, 1)
    assert m.as_dict()["split"] == m.as_dict()["merged"] == 1
    # at 0.65 only the 0.8 pair still matches: the unmatched pieces stay split and merge, not missed
    assert _errors(instance_scores(pred, true, (0.65,))[0.65]) == (1, 1, 1, 1)
    # at 0.9 the good match fails too: its two objects become one missed and one spurious
    assert _errors(instance_scores(pred, true, (0.9,))[0.9]) == (1, 1, 2, 2)


# ----------------------------------------------------------------------------- brute-force reference


def _reference_ious(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """IoU of every (pred, true) object pair, one pair at a time."""
    pred_ids, true_ids = np.unique(pred[pred > 0]), np.unique(true[true > 0])
    ious = np.zeros((pred_ids.size, true_ids.size))
    for i, p in enumerate(pred_ids):
        for j, t in enumerate(true_ids):
            a, b = pred == p, true == t
            ious[i, j] = np.count_nonzero(a & b) / np.count_nonzero(a | b)
    return ious


def _reference_matching(ious: np.ndarray, threshold: float) -> tuple[int, float]:
    """(most matched pairs, then largest IoU sum) over every one-to-one assignment."""
    n_pred, n_true = ious.shape
    best = (0, 0.0)
    slots = list(range(n_true)) + [None] * n_pred
    for assignment in set(itertools.permutations(slots, n_pred)):
        pairs = [(i, j) for i, j in enumerate(assignment) if j is not None and ious[i, j] >= threshold]
        candidate = (len(pairs), sum(ious[i, j] for i, j in pairs))
        if candidate[0] > best[0] or (candidate[0] == best[0] and candidate[1] > best[1] + 1e-12):
            best = candidate
    return best


def _random_labels(rng: np.random.Generator, n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocky true labels and a prediction that mixes them with other blocks, shifted, ids renamed.

    Objects overlap several partners, so low thresholds give groups where picking the best IoU first
    (greedy) matches fewer pairs than the optimal assignment (4 of these 40 seeds × 3 thresholds).
    """
    true = np.kron(rng.integers(0, n_ids + 1, size=(2, 3, 3)), np.ones((2, 2, 2), np.int64))
    other = np.kron(rng.integers(0, n_ids + 1, size=(2, 3, 3)), np.ones((2, 2, 2), np.int64))
    pred = np.roll(np.where(rng.random(true.shape) < 0.5, true, other), int(rng.integers(0, 2)), axis=2)
    mapping = rng.permutation(np.arange(1, 50))[: n_ids + 1] * 3  # non-consecutive ids
    mapping[0] = 0
    return mapping[pred], true


@pytest.mark.parametrize("seed", range(40))
def test_agrees_with_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, true = _random_labels(rng, n_ids=int(rng.integers(2, 6)))
    ious = _reference_ious(pred, true)
    thresholds = (0.1, 0.25, 0.4, 0.5, 0.7)
    scores = instance_scores(pred, true, thresholds)
    for threshold in thresholds:
        tp, iou_sum = _reference_matching(ious, threshold)
        m = scores[threshold]
        assert m == match_instances(pred, true, threshold)
        assert (m.tp, m.n_pred, m.n_true) == (tp, *ious.shape)
        assert (m.fp, m.fn) == (ious.shape[0] - tp, ious.shape[1] - tp)
        assert m.mean_matched_iou == pytest.approx(iou_sum / tp if tp else 0.0)


def _reference_errors(pred: np.ndarray, true: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """Split, merged, missed, spurious by the rules, object by object; exact for thresholds > 0.5,
    where an object has one candidate partner at most and every candidate pair is matched."""
    pred_ids, true_ids = np.unique(pred[pred > 0]), np.unique(true[true > 0])
    pred_inside, true_inside, candidate = set(), set(), set()
    for p, t in itertools.product(pred_ids, true_ids):
        a, b = pred == p, true == t
        both = np.count_nonzero(a & b)
        if 2 * both > np.count_nonzero(a):
            pred_inside.add((p, t))
        if 2 * both > np.count_nonzero(b):
            true_inside.add((p, t))
        if both / np.count_nonzero(a | b) >= threshold:
            candidate.add((p, t))
    split = {t for t in true_ids if sum((p, t) in pred_inside for p in pred_ids) >= 2}
    merged = {p for p in pred_ids if sum((p, t) in true_inside for t in true_ids) >= 2}
    pred_involved = merged | {p for p, t in pred_inside if t in split}
    true_involved = split | {t for p, t in true_inside if p in merged}
    matched_pred, matched_true = {p for p, _ in candidate}, {t for _, t in candidate}
    missed = set(true_ids) - true_involved - matched_true
    spurious = set(pred_ids) - pred_involved - matched_pred
    return len(split), len(merged), len(missed), len(spurious)


@pytest.mark.parametrize("seed", range(40))
def test_errors_agree_with_brute_force(seed: int) -> None:
    """On the random labels, and on a prediction that merges random true objects and cuts them all
    along x (many splits and merges)."""
    rng = np.random.default_rng(seed)
    pred, true = _random_labels(rng, n_ids=int(rng.integers(2, 6)))
    fewer = rng.integers(1, 4, size=int(true.max()) + 1)
    cut = np.arange(true.shape[2]) >= int(rng.integers(1, true.shape[2]))
    merged_and_cut = np.where(true > 0, fewer[true] * 2 + cut, 0)
    for prediction in (pred, merged_and_cut):
        for threshold in (0.1, 0.5, 0.7):
            m = match_instances(prediction, true, threshold)
            assert m.missed <= m.fn and m.spurious <= m.fp
            if threshold > 0.5:
                assert _errors(m) == _reference_errors(prediction, true, threshold)


def test_many_objects_are_fast_and_exact() -> None:
    """256 cubes of 4³ voxels, shifted by one voxel: IoU 3/5 for every pair, all matched at 0.5."""
    true = np.zeros((32, 64, 64), np.uint32)
    corners = itertools.product(range(0, 32, 8), range(0, 64, 8), range(0, 64, 8))
    for ident, (z, y, x) in enumerate(corners, start=1):
        true[z : z + 4, y : y + 4, x : x + 4] = ident * 11
    pred = np.roll(true, 1, axis=2)
    scores = instance_scores(pred, true)
    assert scores[0.5].tp == 256 and scores[0.5].mean_matched_iou == pytest.approx(3 / 5)
    assert scores[0.6].tp == 256 and scores[0.65].tp == 0
    assert f1_mean(scores) == pytest.approx(0.3)  # F1 1.0 at 0.5, 0.55, 0.6; 0.0 above


# ------------------------------------------------------------------------------------ scores and pools


def test_instance_scores_default_thresholds_and_f1_mean() -> None:
    true = _strip((1, 0, 10), (2, 20, 30))
    pred = _strip((1, 0, 8), (2, 20, 30))  # IoU 0.8 and 1.0
    scores = instance_scores(pred, true)
    assert tuple(scores) == THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    assert [scores[t].tp for t in THRESHOLDS] == [2] * 7 + [1] * 3
    assert f1_mean(scores) == pytest.approx((7 * 1.0 + 3 * 0.5) / 10)


def test_combine_sums_counts() -> None:
    a = Matching(0.5, tp=2, fp=1, fn=0, n_pred=3, n_true=2, mean_matched_iou=0.8)
    b = Matching(0.5, tp=1, fp=0, fn=3, n_pred=1, n_true=4, mean_matched_iou=0.5)
    pooled = combine([a, b])
    assert (pooled.tp, pooled.fp, pooled.fn, pooled.n_pred, pooled.n_true) == (3, 1, 3, 4, 6)
    assert pooled.mean_matched_iou == pytest.approx(0.7)
    assert pooled.f1 == pytest.approx(6 / 10)
    assert pooled.as_dict()["f1"] == pooled.f1
    with_errors = [Matching(0.5, 1, 1, 1, 2, 2, 0.6, split=1, merged=0, missed=2, spurious=3)] * 2
    assert _errors(combine(with_errors)) == (2, 0, 4, 6)
    with pytest.raises(ValueError, match="different thresholds"):
        combine([a, Matching(0.6, 0, 0, 0, 0, 0, 0.0)])


def test_dice_by_threshold_matches_thresholding_one_by_one() -> None:
    from voxseg.inference.scoring.metrics import CUT_POINTS, best_threshold, dice_by_threshold

    rng = np.random.default_rng(3)
    truth = rng.random((12, 14, 16)) > 0.7
    probability = np.clip(truth * 0.35 + rng.random(truth.shape) * 0.6, 0, 1).astype(np.float32)
    curve = dice_by_threshold(probability, truth)
    for cut, value in zip(CUT_POINTS, curve, strict=True):
        assert value == pytest.approx(dice(probability >= cut, truth), abs=1e-9)
    best, best_dice = best_threshold(curve)
    assert best_dice == max(curve) and best != 0.5  # this probability is biased low: 0.5 is not best
    assert dice_by_threshold(np.zeros((4, 4, 4)), np.zeros((4, 4, 4), bool)).tolist() == [1.0] * len(
        CUT_POINTS
    )
    assert best_threshold([0.8] * len(CUT_POINTS)) == (0.5, 0.8)  # ties go to 0.5
