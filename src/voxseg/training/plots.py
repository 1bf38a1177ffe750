"""Training-loss and validation-Dice curves as a PNG (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from voxseg.training.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def draw_training_curves(
    figure: Figure,
    losses: list[tuple[int, float]],
    dices: list[tuple[int, float]],
    best: tuple[int, float] | None,
) -> None:
    """Two panels side by side; the best Dice is marked and labelled. Shared by the PNGs and napari."""
    from matplotlib.ticker import MaxNLocator

    figure.clear()
    loss_axes, dice_axes = figure.subplots(1, 2)
    if losses:
        loss_axes.plot(*zip(*losses, strict=True), color="tab:blue", marker=".")
    loss_axes.set(title="Training loss", xlabel="epoch", ylabel="loss")
    if dices:
        dice_axes.plot(*zip(*dices, strict=True), color="tab:green", marker="o")
    if best is not None:
        dice_axes.scatter([best[0]], [best[1]], s=120, facecolors="none", edgecolors="tab:red", zorder=3)
        dice_axes.annotate(
            f"best {best[1]:.3f} @ {best[0]}", best, textcoords="offset points", xytext=(6, -14)
        )
    dice_axes.set(title="Validation Dice", xlabel="epoch", ylabel="Dice", ylim=(0, 1))
    for axes in (loss_axes, dice_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def save_training_curves(
    path: Path,
    losses: list[tuple[int, float]],
    dices: list[tuple[int, float]],
    best: tuple[int, float] | None,
) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    draw_training_curves(figure, losses, dices, best)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))
