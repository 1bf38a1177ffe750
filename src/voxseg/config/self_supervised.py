"""WNet3D's options (`voxseg train --model WNet3D`): its classes, the weights of its three loss terms
and the soft N-cut's neighbourhood, declared once for `TrainConfig` (its own module keeps
config/train.py under 400 lines)."""

from __future__ import annotations

from typing import Any

from voxseg.options import SELF_SUPERVISED, option


def classes() -> Any:
    return option(
        2,
        help="WNet3D's K: classes its encoder divides the image into; the brightest is the nucleus (with "
        "the partition term, the last: it teaches that one)",
        section=SELF_SUPERVISED,
        label="Classes (K)",
        kind="int",
        metavar="K",
        low=2,
        high=8,
    )


def ncut_weight() -> Any:
    return option(
        0.5,
        help="WNet3D: weight of the soft N-cut of the classes (napari-cellseg3d's 0.5)",
        section=SELF_SUPERVISED,
        label="N-cut weight",
        kind="float",
        metavar="W",
        low=0.0,
    )


def reconstruction_weight() -> Any:
    return option(
        0.5,
        help="WNet3D: weight of the decoder's reconstruction of the image (mean squared error; "
        "napari-cellseg3d's 0.5)",
        section=SELF_SUPERVISED,
        label="Reconstruction weight",
        kind="float",
        metavar="W",
        low=0.0,
    )


def partition_weight() -> Any:
    return option(
        1.0,
        help="WNet3D: weight of the agreement (Dice + cross-entropy) of the nucleus class with the "
        "partition each volume gives itself, the cut of the blurred image with the lowest N-cut",
        section=SELF_SUPERVISED,
        label="Partition weight",
        kind="float",
        metavar="W",
        low=0.0,
    )


def ncut_radius() -> Any:
    return option(
        2,
        help="WNet3D: radius in voxels of the N-cut's neighbourhood",
        section=SELF_SUPERVISED,
        label="N-cut radius",
        kind="int",
        metavar="R",
        low=1,
        high=8,
    )


def ncut_sigma_i() -> Any:
    return option(
        1.0,
        help="WNet3D: the N-cut's intensity sigma, on each patch scaled to [0, 100] (napari-cellseg3d's 1)",
        section=SELF_SUPERVISED,
        label="N-cut intensity sigma",
        kind="float",
        metavar="S",
        low=0.0,
        open_low=True,
    )


def ncut_sigma_x() -> Any:
    return option(
        4.0,
        help="WNet3D: the N-cut's spatial sigma in voxels (napari-cellseg3d's 4)",
        section=SELF_SUPERVISED,
        label="N-cut spatial sigma",
        kind="float",
        metavar="S",
        low=0.0,
        open_low=True,
    )
