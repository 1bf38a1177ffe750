"""The six losses: chosen by CLI or display name, finite on logits, and lower for better predictions."""

from __future__ import annotations

import pytest
import torch

from voxseg.errors import ConfigError
from voxseg.losses import LOSSES, build_loss, resolve_loss_name

NAMES = ["dice", "focal", "dice-focal", "generalized-dice", "dice-ce", "tversky"]


def _target() -> torch.Tensor:
    """(2, 1, 8, 8, 8) binary target with a foreground block in each item."""
    target = torch.zeros(2, 1, 8, 8, 8)
    target[0, :, 2:6, 2:6, 2:6] = 1
    target[1, :, 1:4, 3:8, 0:5] = 1
    return target


def test_the_six_losses_are_registered() -> None:
    assert list(LOSSES) == NAMES


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        *[(name, name) for name in NAMES],
        ("Dice-CE loss", "dice-ce"),
        ("DiceCE", "dice-ce"),
        ("Generalized Dice", "generalized-dice"),
        ("generalized_dice", "generalized-dice"),
        ("Dice-Focal", "dice-focal"),
        ("Focal loss", "focal"),
        ("Tversky loss", "tversky"),
        ("DICE", "dice"),
    ],
)
def test_resolve_loss_name(given: str, expected: str) -> None:
    assert resolve_loss_name(given) == expected


def test_unknown_loss_names_the_option() -> None:
    with pytest.raises(ConfigError, match="--loss") as info:
        resolve_loss_name("nosuchloss")
    assert "nosuchloss" in str(info.value) and "dice-ce" in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_finite_scalar_with_gradients_on_random_logits(name: str) -> None:
    torch.manual_seed(0)
    logits = (3 * torch.randn(2, 1, 8, 8, 8)).requires_grad_()
    loss = build_loss(name)(logits, _target())
    assert loss.ndim == 0
    assert torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_good_prediction_scores_lower_than_bad(name: str) -> None:
    """The losses take raw logits: +6 on the target and -6 elsewhere is a near-perfect prediction."""
    target = _target()
    loss = build_loss(name)
    good = loss(torch.where(target > 0, 6.0, -6.0), target)
    inverted = loss(torch.where(target > 0, -6.0, 6.0), target)
    unsure = loss(torch.zeros_like(target), target)
    assert float(good) < float(unsure) < float(inverted)


@pytest.mark.parametrize("name", NAMES)
def test_built_by_display_name(name: str) -> None:
    display = LOSSES[name][1]
    assert type(build_loss(display)) is type(build_loss(name))
