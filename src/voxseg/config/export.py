"""`voxseg export`'s options: a run's network as TorchScript, ONNX or a BioImage Model Zoo package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import voxseg.config.shared as shared
from voxseg.config.predict import MODEL
from voxseg.options import DATA, Declared, option


@dataclass
class ExportConfig(Declared):
    """`voxseg export`: a run's network as TorchScript or ONNX."""

    run: Path | None = shared.run_folder(
        "a voxseg run folder",
        MODEL,
    )
    format: str = option(
        "onnx",
        help="`torchscript` (traced) or `onnx` (opset 17): (N, 1, Z, Y, X) normalised images in, logits out, "
        "the batch and the sides free (within the model's size rule); or `bioimageio`: a BioImage Model "
        "Zoo package (zip) for Fiji/deepImageJ, ilastik, QuPath and napari",
        section=MODEL,
        label="Format",
        kind="choice",
        metavar="FORMAT",
        choices=("torchscript", "onnx", "bioimageio"),
    )
    output: Path | None = option(
        None,
        help="the file to write (checked against PyTorch's output first)",
        section=DATA,
        label="Output",
        kind="file",
        metavar="PATH",
        required=True,
    )
    weights: str = option(
        "best",
        help="`best` (best.pth) or `last` (last.pth)",
        section=MODEL,
        label="Weights",
        kind="choice",
        metavar="WHICH",
        choices=("best", "last"),
    )
    overwrite: bool = option(
        False, help="replace an existing output file", section=DATA, label="Overwrite", kind="bool"
    )
