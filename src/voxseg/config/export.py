"""`voxseg export`'s options: a run's network as TorchScript, ONNX or a BioImage Model Zoo package."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import voxseg.config.shared as shared
from voxseg.config.predict import MODEL
from voxseg.errors import ConfigError
from voxseg.options import DATA, Declared, option

PACKAGE = "BioImage Model Zoo package"
#: a DOI as the zoo takes it (10.NNNN/...), bare or as a doi.org link
_DOI = re.compile(r"(?:https?://(?:dx\.)?doi\.org/)?(10\.\d{4,}/\S+)$")


def entries(text: str) -> list[str]:
    """`A; B` -> [A, B]: several authors or citations in one option."""
    return [entry.strip() for entry in text.split(";") if entry.strip()]


def citation(entry: str) -> tuple[str, str | None, str | None]:
    """`TEXT DOI-or-URL` -> (text, doi, url): the zoo wants what to cite and where to find it."""
    text, _, where = entry.rpartition(" ")
    doi = _DOI.match(where)
    if not text.strip() or not (doi or where.startswith(("https://", "http://"))):
        raise ConfigError(
            f'--cite: {entry!r} must be TEXT then a DOI or URL, e.g. --cite "Doe et al. 2025 10.1234/abcd"'
        )
    return text.strip(), doi.group(1) if doi else None, None if doi else where


def _authors(value: Any) -> str:
    names = entries(str(value))
    if not names or any("/" in name or "\\" in name for name in names):
        raise ConfigError(f"--authors: expected names without slashes, `Name; Name`, got {value!r}")
    return "; ".join(names)


def _citations(value: Any) -> str:
    cited = entries(str(value))
    for entry in cited:
        citation(entry)
    return "; ".join(cited)


@dataclass
class ExportConfig(Declared):
    """`voxseg export`: a run's network as TorchScript, ONNX or a BioImage Model Zoo package."""

    run: Path | None = shared.run_folder(
        "a voxseg run folder",
        MODEL,
    )
    format: str = option(
        "onnx",
        help="`torchscript` (traced) or `onnx` (opset 17): (N, 1, Z, Y, X) normalised images in, logits out, "
        "the batch and the sides free (padded inside to the model's size rule), the threshold and the "
        "normalisation in the file's `voxseg.*` metadata; or `bioimageio`: a BioImage Model Zoo package "
        "(zip) for Fiji/deepImageJ, ilastik, QuPath and napari",
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
    authors: str | None = option(
        None,
        help="bioimageio: who made the model, `Name; Name`",
        section=PACKAGE,
        label="Authors",
        metavar="NAMES",
        optional=True,
        parse=_authors,
        default_text="a placeholder",
    )
    license: str | None = option(
        None,
        help="bioimageio: the model's licence, an SPDX identifier such as `CC-BY-4.0` or `MIT`",
        section=PACKAGE,
        label="Licence",
        metavar="SPDX_ID",
        optional=True,
        default_text="`MIT`, a placeholder",
    )
    cite: str | None = option(
        None,
        help="bioimageio: what users of the model should cite, `TEXT DOI-or-URL` (several: `;` between)",
        section=PACKAGE,
        label="Citation",
        metavar="CITATION",
        optional=True,
        parse=_citations,
        default_text="MONAI's, a placeholder",
    )

    def check(self, values: dict[str, Any]) -> None:
        """The package's human fields are the package's: a TorchScript or ONNX file would drop them."""
        given = [name for name in ("authors", "license", "cite") if values[name] is not None]
        if given and values["format"] != "bioimageio":
            raise ConfigError(
                f"--{given[0]}: only a --format bioimageio package holds it, not --format "
                f"{values['format']}; drop --{given[0]}"
            )
