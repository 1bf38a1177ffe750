"""Which foreground threshold a run hands to `voxseg predict`, and why.

A threshold tuned on validation is only as good as the validation: on a few blocks of one volume
the best cut often lands at the edge of the grid (QCANet, one embryo: 0.95, where the Dice at 0.5
was 0.67-0.76), which says that the probabilities are off, not where to cut the next volume. So the
tuned cut is adopted only when the validation supports it: it holds enough objects, the cut is
inside the grid, and it gains clearly over 0.5. Otherwise the run keeps 0.5, the cut the loss
trained the probabilities for, and says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from voxseg.inference.scoring.metrics import CUT_POINTS, best_threshold

#: a tuned cut must beat 0.5 by this much Dice on validation
MIN_GAIN = 0.01
#: and validation must hold at least this many objects (connected foreground components)
MIN_OBJECTS = 4
DEFAULT = 0.5


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    dice: float  # the validation Dice at `threshold`: what `voxseg predict` gets there
    dice_at_half: float
    reason: str


def count_objects(labels: Sequence[np.ndarray]) -> int:
    """Connected foreground components (26-connected) over validation label classes."""
    from scipy import ndimage

    from voxseg.data.labels import FOREGROUND

    structure = np.ones((3, 3, 3), bool)
    return sum(int(ndimage.label(np.asarray(label) == FOREGROUND, structure)[1]) for label in labels)


def choose_threshold(
    curve: Sequence[float], objects: int | None, partitions: bool = False
) -> ThresholdChoice:
    """The cut to predict with from a validation's Dice at each of CUT_POINTS; `objects`: how many
    the validation holds (None: unknown, as for runs that predate the count); `partitions`: the
    validation is the volumes' own partitions (WNet3D without labels), not labels."""
    at_half = float(curve[CUT_POINTS.index(DEFAULT)])
    tuned, tuned_dice = best_threshold(curve)
    if tuned == DEFAULT:
        return ThresholdChoice(DEFAULT, at_half, at_half, "0.5 is the best cut on validation")
    found = f"the best cut on validation, {tuned:.2f}, gives Dice {tuned_dice:.4f} ({at_half:.4f} at 0.5)"
    if partitions:
        # measured on 5 WNet3D runs (docs/self_supervised.md): a cut tuned to agree with a partition
        # copies the partition's blurred boundary; 0.5 scored 0.920 against the labels, tuned 0.910
        why = "validation is the volume's own partition, whose boundary a tuned cut would only copy"
    elif objects is not None and objects < MIN_OBJECTS:
        why = f"validation holds {objects} object(s), too few to tune on (at least {MIN_OBJECTS})"
    elif tuned in (CUT_POINTS[0], CUT_POINTS[-1]):
        why = "it is the edge of the grid, so the probabilities are off rather than the cut"
    elif tuned_dice - at_half < MIN_GAIN:
        why = f"a gain below {MIN_GAIN}"
    else:
        return ThresholdChoice(tuned, tuned_dice, at_half, f"tuned: {found}")
    return ThresholdChoice(DEFAULT, at_half, at_half, f"kept at 0.5: {found}, but {why}")
