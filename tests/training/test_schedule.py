"""LR schedules: the curves of the hand-written schedule they replaced, exact resume, old checkpoints."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from voxseg.training.schedule import LRSchedule

BASE = 1e-3
KINDS = ("none", "plateau", "cosine", "poly")

# LRs of epochs 1..10 (epochs=10, base 1e-3) from the hand-written schedule (before torch schedulers),
# keyed by (kind, warm-up epochs); `plateau` without validations
BEFORE = {
    ("none", 0): [0.001] * 10,
    ("none", 3): [0.00025, 0.0005, 0.00075] + [0.001] * 7,
    ("plateau", 0): [0.001] * 10,
    ("plateau", 3): [0.00025, 0.0005, 0.00075] + [0.001] * 7,
    ("cosine", 0): [
        0.001,
        0.0009755527298894294,
        0.0009046039886902864,
        0.0007940987335200904,
        0.0006548539886902864,
        0.0005005000000000001,
        0.0003461460113097139,
        0.00020690126647990973,
        9.639601130971382e-05,
        2.5447270110570814e-05,
    ],
    ("cosine", 3): [
        0.00025,
        0.0005,
        0.00075,
        0.001,
        0.0009505339495172585,
        0.0008119331560284375,
        0.0006116492065111791,
        0.00038935079348882104,
        0.00018906684397156263,
        5.046605048274169e-05,
    ],
    ("poly", 0): [
        0.001,
        0.0009095325760829623,
        0.0008180521460508585,
        0.0007254178469372199,
        0.0006314458674893553,
        0.0005358867312681466,
        0.00043838329055408696,
        0.0003383834619016499,
        0.00023492378861760376,
        0.00012589254117941672,
    ],
    ("poly", 3): [
        0.00025,
        0.0005,
        0.00075,
        0.001,
        0.0008704581368591593,
        0.0007387283529495573,
        0.0006043183144790013,
        0.00046646696566721586,
        0.0003238461661916278,
        0.00017354486343415247,
    ],
}

# validation Dice of epochs 1..20: best 0.3 at epoch 3 (equal is not better), 0.31 at epoch 9, then flat
DICE = [0.1, 0.2, 0.3, 0.3, 0.25, 0.3, 0.29, 0.3, 0.31] + [0.2] * 11
# the hand-written schedule's `plateau` LRs of epochs 1..20 with DICE (epochs=20), by warm-up epochs
PLATEAU_BEFORE = {
    0: [0.001] * 8 + [0.0005] * 6 + [0.00025] * 5 + [0.000125],
    3: [0.00025, 0.0005, 0.00075] + [0.001] * 11 + [0.0005] * 5 + [0.00025],
}
# LRs of epochs 1..15 with warm-up 3 and epochs=15 (what a 10-epoch run extended to 15 follows)
BEFORE_15 = {
    "cosine": [
        0.00025,
        0.0005,
        0.00075,
        0.001,
        0.0009829799502313896,
        0.0009330796891903273,
        0.0008536998372026805,
        0.0007502500000000002,
        0.0006297801130287093,
        0.0005005000000000001,
        0.0003712198869712909,
        0.00025075000000000016,
        0.00014730016279731955,
        6.792031080967287e-05,
        1.8020049768610437e-05,
    ],
    "poly": [
        0.00025,
        0.0005,
        0.00075,
        0.001,
        0.0009246775107445346,
        0.0008486661467891869,
        0.0007718895067235705,
        0.0006942531626616071,
        0.0006156375689723185,
        0.0005358867312681466,
        0.00045478892734079034,
        0.00037204105801130153,
        0.0002871745887492587,
        0.0001993718664752192,
        0.00010684073783223467,
    ],
}
# state_dict() of the hand-written `plateau` schedule (warm-up 3, epochs 20, DICE) after epoch 12:
# best 0.31, 3 validations without a better Dice
OLD_PLATEAU_STATE: dict[str, Any] = {
    "plateau": {
        "factor": 0.5,
        "default_min_lr": 1e-06,
        "min_lrs": [1e-06],
        "patience": 4,
        "cooldown": 0,
        "eps": 1e-08,
        "last_epoch": 9,
        "_last_lr": [0.001],
        "mode_worse": -math.inf,
        "mode": "max",
        "threshold": 0.0001,
        "threshold_mode": "rel",
        "best": 0.31,
        "cooldown_counter": 0,
        "num_bad_epochs": 3,
    },
    "plateau_lr": 0.001,
}


def _optimizer(lr: float = BASE) -> torch.optim.Optimizer:
    return torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), lr=lr)


def _run(
    schedule: LRSchedule, epochs: range, dice: Sequence[float] | None = None, train: bool = False
) -> list[float]:
    """The LRs `schedule` sets for `epochs`, validating each with dice[epoch - 1] when given."""
    lrs = []
    for epoch in epochs:
        lrs.append(schedule.start_epoch(epoch))
        assert all(group["lr"] == lrs[-1] for group in schedule.optimizer.param_groups)
        if train:
            for param in schedule.optimizer.param_groups[0]["params"]:
                param.grad = torch.ones_like(param)
            schedule.optimizer.step()
        if dice is not None:
            schedule.validated(epoch, dice[epoch - 1])
    return lrs


def _close(actual: Sequence[float], expected: Sequence[float]) -> bool:
    return actual == pytest.approx(expected, rel=1e-12, abs=0)


def _through_a_file(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(("kind", "warmup"), list(BEFORE))
def test_curves_are_those_of_the_hand_written_schedule(kind: str, warmup: int) -> None:
    assert _close(_run(LRSchedule(_optimizer(), kind, BASE, 10, warmup), range(1, 11)), BEFORE[kind, warmup])


@pytest.mark.parametrize("warmup", [0, 3])
def test_plateau_is_that_of_the_hand_written_schedule(warmup: int) -> None:
    lrs = _run(LRSchedule(_optimizer(), "plateau", BASE, 20, warmup), range(1, 21), DICE)
    assert _close(lrs, PLATEAU_BEFORE[warmup])


@pytest.mark.parametrize("kind", ["none", "cosine", "poly"])
def test_warm_up_then_decay_formulas(kind: str) -> None:
    """Warm-up base*e/(warmup+1); then cosine to 1e-6, poly (1-progress)^0.9 or constant."""
    base, epochs, warmup = 3e-4, 37, 4
    lrs = _run(LRSchedule(_optimizer(base), kind, base, epochs, warmup), range(1, epochs + 1))
    expected = [base * epoch / (warmup + 1) for epoch in range(1, warmup + 1)]
    for epoch in range(warmup + 1, epochs + 1):
        progress = (epoch - 1 - warmup) / (epochs - warmup)
        expected.append(
            {
                "none": base,
                "cosine": 1e-6 + (base - 1e-6) * 0.5 * (1 + math.cos(math.pi * progress)),
                "poly": base * (1 - progress) ** 0.9,
            }[kind]
        )
    assert _close(lrs, expected)
    assert lrs[warmup] == base  # the decay starts at exactly the base LR


def test_plateau_semantics() -> None:
    """Halve after 5 validations without a better Dice, from the next epoch on; floor 1e-6."""
    schedule = LRSchedule(_optimizer(1e-5), "plateau", 1e-5, 40, 0)
    lrs = _run(schedule, range(1, 41), [0.5] * 40)
    # validation 1 sets the best, 2-6 are the 5 without a better Dice: epoch 7 trains at half the LR
    assert lrs == [1e-5] * 6 + [5e-6] * 5 + [2.5e-6] * 5 + [1.25e-6] * 5 + [1e-6] * 19


def test_plateau_counts_only_validations_after_warm_up() -> None:
    schedule = LRSchedule(_optimizer(), "plateau", BASE, 20, 3)
    lrs = _run(schedule, range(1, 21), [0.9, 0.5, 0.1] + [0.2] * 17)
    # warm-up's Dice (0.9 included) are not counted: epoch 4 sets the best, 5-9 fail to beat it
    assert lrs == [0.00025, 0.0005, 0.00075] + [BASE] * 6 + [BASE / 2] * 5 + [BASE / 4] * 5 + [BASE / 8]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("warmup", [0, 3])
def test_resume_after_any_epoch_gives_the_same_lrs(kind: str, warmup: int) -> None:
    """Rebuilt as the engine does (schedule, then optimizer state, then schedule state) after epoch k;
    for `plateau` this includes every point of its patience. No torch warning either."""
    epochs = 20
    full = _run(LRSchedule(_optimizer(), kind, BASE, epochs, warmup), range(1, epochs + 1), DICE, train=True)
    for k in range(1, epochs):
        first = LRSchedule(_optimizer(), kind, BASE, epochs, warmup)
        assert _run(first, range(1, k + 1), DICE, train=True) == full[:k]
        saved = _through_a_file({"optimizer": first.optimizer.state_dict(), "schedule": first.state_dict()})
        resumed = LRSchedule(_optimizer(), kind, BASE, epochs, warmup)
        resumed.optimizer.load_state_dict(saved["optimizer"])
        resumed.load_state_dict(saved["schedule"])
        assert _run(resumed, range(k + 1, epochs + 1), DICE, train=True) == full[k:], k


@pytest.mark.parametrize("kind", ["cosine", "poly"])
def test_an_extended_run_follows_the_curve_of_its_new_length(kind: str) -> None:
    """As before torch schedulers: cosine and poly are recomputed from the new number of epochs, so a
    10-epoch run extended to 15 continues on the 15-epoch curve (its LR jumps back up at epoch 11)."""
    done = LRSchedule(_optimizer(), kind, BASE, 10, 3)
    _run(done, range(1, 11))
    extended = LRSchedule(_optimizer(), kind, BASE, 15, 3)
    extended.load_state_dict(_through_a_file(done.state_dict()))
    lrs = _run(extended, range(11, 16))
    assert _close(lrs, BEFORE_15[kind][10:])
    assert lrs == _run(LRSchedule(_optimizer(), kind, BASE, 15, 3), range(1, 16))[10:]


def test_an_extended_plateau_run_keeps_its_lr_and_patience() -> None:
    done = LRSchedule(_optimizer(), "plateau", BASE, 12, 3)
    _run(done, range(1, 13), DICE)
    extended = LRSchedule(_optimizer(), "plateau", BASE, 20, 3)
    extended.load_state_dict(done.state_dict())
    assert _run(extended, range(13, 21), DICE) == PLATEAU_BEFORE[3][12:]


def test_a_checkpoint_from_the_hand_written_schedule_resumes() -> None:
    """Runs saved before torch schedulers: the state format is unchanged, so they load as they are."""
    resumed = LRSchedule(_optimizer(), "plateau", BASE, 20, 3)
    resumed.load_state_dict(_through_a_file(OLD_PLATEAU_STATE))
    assert _run(resumed, range(13, 21), DICE) == PLATEAU_BEFORE[3][12:]
    for kind in ("none", "cosine", "poly"):
        resumed = LRSchedule(_optimizer(), kind, BASE, 10, 3)
        resumed.load_state_dict({"plateau": None, "plateau_lr": BASE})
        assert _close(_run(resumed, range(7, 11)), BEFORE[kind, 3][6:])


def test_lr_for_answers_any_epoch_in_any_order_without_touching_the_optimizer() -> None:
    schedule = LRSchedule(_optimizer(0.123), "cosine", BASE, 10, 3)
    order = [7, 2, 10, 1, 5, 5, 4, 9, 3, 6, 8]
    fresh = _run(LRSchedule(_optimizer(), "cosine", BASE, 10, 3), range(1, 11))
    assert [schedule.lr_for(e) for e in order] == [fresh[e - 1] for e in order]
    assert schedule.optimizer.param_groups[0]["lr"] == 0.123
