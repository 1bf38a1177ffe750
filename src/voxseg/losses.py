"""The six MONAI losses of the origin document, with its parameters, chosen by name.

Built with ``ignore=True`` a loss also takes sparse labels: voxels labelled ``IGNORED`` are not annotated and
are excluded exactly. MONAI 1.6 gives only DiceLoss, FocalLoss and TverskyLoss an ``ignore_index`` (not
GeneralizedDiceLoss, DiceCELoss nor DiceFocalLoss) and MONAI 1.4 none, so every masked loss is composed here
the same way from MONAI's terms (see ``_masked_loss_type``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from voxseg.data.labels import IGNORED  # a voxel that is not annotated: no loss and no gradient there
from voxseg.errors import ConfigError

if TYPE_CHECKING:  # MONAI and torch are imported when a loss is built, not when a name is checked
    import torch
    from torch import nn


@cache
def _masked_loss_type() -> type[nn.Module]:
    """The class of the masked losses, defined on first use so that torch loads only when a loss is built."""
    import torch
    from torch import nn

    class MaskedLoss(nn.Module):
        """A MONAI loss restricted to the annotated voxels of (logits, labels); labels may hold IGNORED.

        Ignored voxels get the logit 0 and the target 0 first, so their logits and label values never reach
        a term and receive an exact zero gradient. The overlap term (Dice, Generalized Dice, Tversky; MONAI
        loss built without sigmoid) then takes the sigmoid probabilities times the annotated mask, as MONAI's
        ``ignore_index`` and MaskedDiceLoss do, and the voxel term (focal, binary cross-entropy; MONAI loss
        with ``reduction="none"``) is averaged over the annotated voxels only. With no ignored voxel the sum
        ``overlap_weight * overlap + voxel`` equals MONAI's own loss (DiceFocalLoss, DiceCELoss, ...).
        """

        def __init__(self, overlap: nn.Module | None, voxel: nn.Module | None, overlap_weight: float) -> None:
            super().__init__()
            self.overlap = overlap
            self.voxel = voxel
            self.overlap_weight = overlap_weight

        def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            annotated = labels != IGNORED
            logits = torch.where(annotated, logits, 0.0)
            targets = torch.where(annotated, labels, 0.0)
            loss = logits.new_zeros(())
            if self.overlap is not None:
                probabilities = torch.sigmoid(logits) * annotated
                loss = loss + self.overlap_weight * self.overlap(probabilities, targets)
            if self.voxel is not None:
                per_voxel = self.voxel(logits, targets) * annotated
                loss = loss + per_voxel.sum() / annotated.sum().clamp(min=1)
            return loss

    return MaskedLoss


def _masked(
    overlap: nn.Module | None = None, voxel: nn.Module | None = None, overlap_weight: float = 1.0
) -> nn.Module:
    return _masked_loss_type()(overlap, voxel, overlap_weight)


def _dice(ignore: bool) -> nn.Module:
    from monai.losses import DiceLoss

    return _masked(overlap=DiceLoss()) if ignore else DiceLoss(sigmoid=True)


def _focal(ignore: bool) -> nn.Module:
    from monai.losses import FocalLoss

    # applies a sigmoid itself (use_softmax=False)
    return _masked(voxel=FocalLoss(reduction="none")) if ignore else FocalLoss()


def _dice_focal(ignore: bool) -> nn.Module:
    from monai.losses import DiceFocalLoss, DiceLoss, FocalLoss

    if ignore:  # DiceFocalLoss's terms, lambda_focal=1
        return _masked(overlap=DiceLoss(), voxel=FocalLoss(reduction="none"), overlap_weight=0.5)
    return DiceFocalLoss(sigmoid=True, lambda_dice=0.5)


def _generalized_dice(ignore: bool) -> nn.Module:
    from monai.losses import GeneralizedDiceLoss

    return _masked(overlap=GeneralizedDiceLoss()) if ignore else GeneralizedDiceLoss(sigmoid=True)


def _dice_ce(ignore: bool) -> nn.Module:
    from monai.losses import DiceCELoss, DiceLoss
    from torch import nn

    if ignore:  # DiceCELoss's terms, lambda_dice=lambda_ce=1
        return _masked(overlap=DiceLoss(), voxel=nn.BCEWithLogitsLoss(reduction="none"))
    return DiceCELoss(sigmoid=True)  # one output channel: the CE term is binary cross-entropy


def _tversky(ignore: bool) -> nn.Module:
    from monai.losses import TverskyLoss

    return _masked(overlap=TverskyLoss()) if ignore else TverskyLoss(sigmoid=True)


#: CLI name -> (builder taking ``ignore``, the origin document's display name)
LOSSES: dict[str, tuple[Callable[[bool], nn.Module], str]] = {
    "dice": (_dice, "Dice"),
    "focal": (_focal, "Focal"),
    "dice-focal": (_dice_focal, "Dice-Focal"),
    "generalized-dice": (_generalized_dice, "Generalized Dice"),
    "dice-ce": (_dice_ce, "DiceCE"),
    "tversky": (_tversky, "Tversky"),
}


LOSS_NAMES = tuple(LOSSES)


def _key(name: str) -> str:
    text = str(name).lower().replace(" loss", "").strip()
    return "".join(c for c in text if c.isalnum())


_ALIASES = {_key(cli): cli for cli in LOSSES} | {_key(display): cli for cli, (_, display) in LOSSES.items()}


def resolve_loss_name(name: str) -> str:
    """CLI name of a loss; also accepts the origin's display names ("Dice-CE loss", "Generalized Dice")."""
    key = _key(name)
    if key not in _ALIASES:
        raise ConfigError(f"--loss: unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return _ALIASES[key]


def build_loss(name: str, ignore: bool = False) -> nn.Module:
    """A loss taking raw logits (B, 1, Z, Y, X) and binary float targets of the same shape.

    ``ignore=False``: MONAI's loss itself. ``ignore=True``: the same loss over the annotated voxels only,
    for targets that may also hold ``IGNORED``.
    """
    return LOSSES[resolve_loss_name(name)][0](ignore)


@dataclass(frozen=True)
class SelfSupervision:
    """WNet3D's loss: weights of its three terms and the N-cut's neighbourhood (voxseg.ncut); the
    values come from the options (config/self_supervised.py), declared there once."""

    ncut_weight: float
    reconstruction_weight: float
    partition_weight: float
    radius: int
    sigma_i: float
    sigma_x: float


class Objective:
    """The engine's loss, called on (network outputs, labels, the images they came from).

    `terms` holds the last call's parts of the loss by name, unweighted, for metrics.csv and the curves
    (empty when the loss is one term)."""

    def __init__(self, loss: Callable[..., torch.Tensor]) -> None:
        self.loss = loss
        self.terms: dict[str, float] = {}

    def __call__(self, outputs: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return self.loss(outputs, labels)


class SelfSupervisedObjective(Objective):
    """WNet3D's loss: the N-cut of its classes + the reconstruction of the image + the agreement of the
    last class (the nucleus) with the partition the volume gave itself (voxseg.data.self_labels)."""

    def __init__(self, weights: SelfSupervision) -> None:
        super().__init__(build_loss("dice-ce", ignore=True))
        self.weights = weights

    def __call__(self, outputs: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        from voxseg.models.wnet import foreground_logit
        from voxseg.ncut import soft_ncut

        weights, classes = self.weights, outputs.shape[1] - 1
        logits, reconstruction = outputs[:, :classes], outputs[:, classes:]
        terms: dict[str, torch.Tensor] = {}  # the N-cut and the reconstruction only when weighted
        if weights.ncut_weight:
            probabilities = torch.softmax(logits, 1)
            terms["ncut"] = soft_ncut(probabilities, images, weights.radius, weights.sigma_i, weights.sigma_x)
        if weights.reconstruction_weight:
            terms["reconstruction"] = F.mse_loss(reconstruction, images)
        terms["partition"] = self.loss(foreground_logit(logits, torch.tensor(classes - 1)), labels)
        self.terms = {name: float(value.detach()) for name, value in terms.items()}
        return sum(getattr(weights, f"{name}_weight") * value for name, value in terms.items())


class DistanceObjective(Objective):
    """`name`'s loss on the foreground output, plus the distance output's binary cross-entropy against
    each nucleus's normalised distance to its boundary (`data.distance`; StarDist's loss of its object
    probability), over the annotated voxels: labels are (classes, distance) channels. Labels of classes
    alone (reviewed planes, no ids) train the foreground only and leave the distance as it was."""

    def __call__(self, outputs: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        classes, distance = labels[:, :1], labels[:, 1:]
        foreground = self.loss(outputs[:, :1], classes)
        if not distance.shape[1]:
            return foreground
        annotated = classes != IGNORED
        per_voxel = F.binary_cross_entropy_with_logits(outputs[:, 1:], distance, reduction="none")
        separation = (per_voxel * annotated).sum() / annotated.sum().clamp(min=1)
        self.terms = {"foreground": float(foreground.detach()), "distance": float(separation.detach())}
        return foreground + separation


def build_objective(
    name: str,
    ignore: bool = False,
    self_supervision: SelfSupervision | None = None,
    outputs: Sequence[str] = ("foreground",),
) -> Objective:
    """The engine's loss: `name`'s on (logits, labels); for a network with the `distance` output also
    that output's (`DistanceObjective`); with `self_supervision` WNet3D's on (class logits +
    reconstruction, the partition the volume gave itself, images)."""
    if self_supervision is not None:
        return SelfSupervisedObjective(self_supervision)
    if "distance" in outputs:
        return DistanceObjective(build_loss(name, ignore))
    return Objective(build_loss(name, ignore))
