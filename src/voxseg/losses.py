"""The six MONAI losses of the origin document, with its parameters, chosen by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from voxseg.errors import ConfigError

if TYPE_CHECKING:  # MONAI and torch are imported when a loss is built, not when a name is checked
    from torch import nn


def _dice() -> nn.Module:
    from monai.losses import DiceLoss

    return DiceLoss(sigmoid=True)


def _focal() -> nn.Module:
    from monai.losses import FocalLoss

    return FocalLoss()  # applies a sigmoid itself (use_softmax=False)


def _dice_focal() -> nn.Module:
    from monai.losses import DiceFocalLoss

    return DiceFocalLoss(sigmoid=True, lambda_dice=0.5)


def _generalized_dice() -> nn.Module:
    from monai.losses import GeneralizedDiceLoss

    return GeneralizedDiceLoss(sigmoid=True)


def _dice_ce() -> nn.Module:
    from monai.losses import DiceCELoss

    return DiceCELoss(sigmoid=True)  # one output channel: the CE term is binary cross-entropy


def _tversky() -> nn.Module:
    from monai.losses import TverskyLoss

    return TverskyLoss(sigmoid=True)


#: CLI name -> (builder, the origin document's display name)
LOSSES: dict[str, tuple[Callable[[], nn.Module], str]] = {
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


def build_loss(name: str) -> nn.Module:
    """A loss taking raw logits (B, 1, Z, Y, X) and binary float targets of the same shape."""
    return LOSSES[resolve_loss_name(name)][0]()
