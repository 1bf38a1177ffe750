"""`voxseg tune-threshold`'s options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import voxseg.config.shared as shared
from voxseg.config.predict import MODEL
from voxseg.options import Declared


@dataclass
class TuneConfig(Declared):
    """`voxseg tune-threshold`: a finished run folder."""

    run: Path | None = shared.run_folder(
        "a voxseg run folder: its best weights are applied to its validation volumes and the "
        "threshold chosen as training chooses it (the best cut where the validation supports it, else "
        "0.5) is written to its summary.json with the reason",
        MODEL,
    )
