"""The six losses: chosen by CLI or display name, finite on logits, and lower for better predictions.

Built with ``ignore=True`` they take sparse labels and leave the IGNORED voxels out exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from voxseg.errors import ConfigError
from voxseg.losses import IGNORED, LOSSES, build_loss, build_objective, resolve_loss_name

NAMES = ["dice", "focal", "dice-focal", "generalized-dice", "dice-ce", "tversky"]
OVERLAP = ["dice", "generalized-dice", "tversky"]


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


def _logits() -> torch.Tensor:
    torch.manual_seed(0)
    return 3 * torch.randn(2, 1, 8, 8, 8)


def _sparse_target() -> torch.Tensor:
    """_target() with about half of its voxels not annotated."""
    torch.manual_seed(1)
    target = _target()
    target[torch.rand_like(target) < 0.5] = IGNORED
    return target


@pytest.mark.parametrize("name", NAMES)
def test_masked_loss_equals_monai_loss_when_nothing_is_ignored(name: str) -> None:
    logits, target = _logits(), _target()
    masked = build_loss(name, ignore=True)(logits, target)
    assert masked.ndim == 0
    assert float(masked) == pytest.approx(float(build_loss(name)(logits, target)), rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_ignored_logits_change_nothing_and_get_no_gradient(name: str) -> None:
    target = _sparse_target()
    ignored = target == IGNORED
    assert 0.4 < float(ignored.float().mean()) < 0.6
    loss_fn = build_loss(name, ignore=True)
    logits = _logits().requires_grad_()
    loss = loss_fn(logits, target)
    assert torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None
    assert (logits.grad[ignored] == 0).all()
    assert logits.grad[~ignored].abs().sum() > 0
    changed = torch.where(ignored, 100 * torch.randn_like(logits), logits.detach())
    assert float(loss_fn(changed, target)) == float(loss.detach())


def test_focal_is_averaged_over_annotated_voxels_only() -> None:
    logits, target = _logits(), _sparse_target()
    annotated = target != IGNORED
    only_annotated = build_loss("focal")(
        logits[annotated].view(1, 1, -1, 1, 1), target[annotated].view(1, 1, -1, 1, 1)
    )
    masked = build_loss("focal", ignore=True)(logits, target)
    assert float(masked) == pytest.approx(float(only_annotated), rel=1e-5)


@pytest.mark.parametrize("name", OVERLAP)
def test_overlap_loss_sees_ignored_voxels_as_absent(name: str) -> None:
    """An ignored voxel counts as neither predicted nor true: like a certain background voxel."""
    logits, target = _logits(), _sparse_target()
    ignored = target == IGNORED
    as_background = build_loss(name)(logits.masked_fill(ignored, -1e4), target.masked_fill(ignored, 0))
    assert float(build_loss(name, ignore=True)(logits, target)) == pytest.approx(
        float(as_background), rel=1e-5
    )


def test_compound_losses_are_monai_weighted_sums_of_their_masked_terms() -> None:
    logits, target = _logits(), _sparse_target()
    annotated = target != IGNORED
    dice = float(build_loss("dice", ignore=True)(logits, target))
    focal = float(build_loss("focal", ignore=True)(logits, target))
    ce = float(F.binary_cross_entropy_with_logits(logits[annotated], target[annotated]))
    assert float(build_loss("dice-focal", ignore=True)(logits, target)) == pytest.approx(
        0.5 * dice + focal, rel=1e-5
    )
    assert float(build_loss("dice-ce", ignore=True)(logits, target)) == pytest.approx(dice + ce, rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_with_nothing_annotated_is_finite_with_zero_gradient(name: str) -> None:
    logits = _logits().requires_grad_()
    loss = build_loss(name, ignore=True)(logits, torch.full_like(logits, IGNORED))
    assert torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and (logits.grad == 0).all()


def test_the_distance_output_adds_its_cross_entropy_on_annotated_voxels_only() -> None:
    """Labels (classes, distance): the foreground's loss on output 0, plus the binary cross-entropy of
    output 1 against the distance, averaged over annotated voxels; an ignored voxel gets no gradient."""
    torch.manual_seed(0)
    outputs = torch.randn(2, 2, 4, 5, 6, requires_grad=True)
    classes = torch.randint(0, 2, (2, 1, 4, 5, 6)).float()
    distance = torch.rand(2, 1, 4, 5, 6) * classes
    objective = build_objective("dice-ce", ignore=True, outputs=("foreground", "distance"))
    loss = objective(outputs, torch.cat([classes, distance], 1), torch.zeros(2, 1, 4, 5, 6))
    expected = build_loss("dice-ce", ignore=True)(outputs[:, :1], classes)
    expected = expected + F.binary_cross_entropy_with_logits(outputs[:, 1:], distance)
    assert torch.allclose(loss, expected)
    assert set(objective.terms) == {"foreground", "distance"}
    classes[0, 0, 0, 0, 0] = IGNORED
    loss = objective(outputs, torch.cat([classes, distance], 1), torch.zeros(2, 1, 4, 5, 6))
    (gradient,) = torch.autograd.grad(loss, outputs)
    assert not gradient[0, :, 0, 0, 0].any() and gradient[1, :, 0, 0, 0].any()
