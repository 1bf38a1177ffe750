"""Where a prediction's outputs came from, stamped into each of them, so that none is taken for another's.

Every output of `voxseg predict` (mask, labels, probabilities, distance, objects table) carries the same
stamp: the prediction's id, voxseg's version, the run or weights file, the weights' SHA-256, the input
and every setting the result depends on. The id is a hash of the journal's fingerprint (those settings,
the weights' hash and the input), not of the time: the same prediction made by one process, by torchrun
ranks or resumed writes the same bytes, and any other prediction gets another id. `voxseg evaluate`
refuses a mask and labels whose ids differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voxseg.errors import DataError
from voxseg.version import __version__

#: the first line of an objects table: this text, then the stamp as JSON (pandas: `comment="#"`)
CSV_MARK = "# voxseg prediction "


def prediction_stamp(fingerprint: Mapping[str, Any], source: Path) -> dict[str, str]:
    """The stamp of the prediction `fingerprint` describes (`job.volume.fingerprint`), made from `source`."""
    settings = json.dumps(fingerprint, sort_keys=True)
    return {
        "prediction": hashlib.sha256(settings.encode()).hexdigest()[:16],
        "voxseg": __version__,
        "source": str(Path(source).resolve()),
        "weights_sha256": str(fingerprint["weights"]),
        "input": str(fingerprint["input"]),
        "settings": settings,
    }


def csv_stamp_line(stamp: Mapping[str, str]) -> str:
    return f"{CSV_MARK}{json.dumps(dict(stamp), sort_keys=True)}\n"


def read_stamp(path: Path) -> dict[str, str] | None:
    """The stamp of a prediction output (a volume, or an objects table); None when it has none."""
    if path.suffix.lower() == ".csv":
        try:
            with open(path, encoding="utf-8") as handle:
                first = handle.readline()
        except (OSError, UnicodeDecodeError):
            return None
        if not first.startswith(CSV_MARK):
            return None
        try:
            stamp = json.loads(first[len(CSV_MARK) :])
        except json.JSONDecodeError:
            return None
        return stamp if isinstance(stamp, dict) else None
    from voxseg.io.formats import read_provenance

    return read_provenance(path)


def check_same_prediction(paths: list[Path]) -> None:
    """Refuse outputs of different predictions read together (a mask and another prediction's labels),
    naming both; outputs without a stamp (made by hand, or by an older voxseg) are taken as they are."""
    stamped = [(path, stamp) for path in paths if (stamp := read_stamp(path)) is not None]
    for path, stamp in stamped[1:]:
        first, theirs = stamped[0]
        if stamp.get("prediction") != theirs.get("prediction"):
            raise DataError(
                f"{first} and {path} come from different predictions ({_described(theirs)}; "
                f"{_described(stamp)}); predict again into an empty --output, or with --overwrite"
            )


def _described(stamp: Mapping[str, str]) -> str:
    return f"{stamp.get('prediction')}: {stamp.get('source')}"
