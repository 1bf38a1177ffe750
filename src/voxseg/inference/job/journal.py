"""The record of a volume's prediction in progress, so that a stopped job (pre-empted, killed, a
laptop that slept) continues where it stopped (`voxseg predict --resume`).

Everything of a volume is written in a hidden folder beside the outputs, `.voxseg-partial-<name>/`,
and moved into place only when complete. It holds `plan.json` (what is being computed, with a
fingerprint of every setting that changes the result, and the normalisation, so a resumed job
computes the same bytes) and one small record per finished block, each written atomically by the
rank that did the work (no file is shared, so no lock). A record holds the CRC-32 of every array it
wrote, computed on the bytes as written; `--resume` reads the block back and redoes any block whose
bytes differ (a write cut short by a kill).
"""

from __future__ import annotations

import json
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxseg.errors import ConfigError, DataError
from voxseg.io.formats import open_volume
from voxseg.runtime.files import atomic_write, write_text

PREFIX = ".voxseg-partial-"
#: the partial folder's layout; a stopped job of another layout is not resumed
VERSION = 3


def crc(planes: np.ndarray, running: int = 0) -> int:
    """CRC-32 of an array's bytes in C order, continuing `running` (blocks arrive piece by piece)."""
    return zlib.crc32(np.ascontiguousarray(planes), running)


@dataclass(frozen=True)
class WorkArrays:
    """The arrays of a prediction in progress, by their file names in its partial folder."""

    mask: str  # the final mask
    thresholded: str  # the probability at the threshold: the final mask itself without instances
    probability: str | None  # saved, or kept for the instances (watershed seeds, mean probability)
    local: str | None = None  # the instances' ids per slab
    labels: str | None = None
    distance: str | None = None  # the network's distance output, kept for the instances' seeds

    @property
    def streamed(self) -> list[str]:
        """What the windows' pass writes."""
        return [self.thresholded] + [name for name in (self.probability, self.distance) if name]


@dataclass(frozen=True)
class Journal:
    """The partial folder of one volume's prediction."""

    folder: Path

    @classmethod
    def of(cls, output: Path, name: str) -> Journal:
        return cls(output / f"{PREFIX}{name}")

    def __truediv__(self, name: str) -> Path:
        return self.folder / name

    @property
    def started(self) -> bool:
        return (self.folder / "plan.json").exists()

    def plan(self) -> dict[str, Any]:
        return json.loads((self.folder / "plan.json").read_text())

    def begin(self, plan: dict[str, Any]) -> None:
        """A new partial folder with its plan (an old one is removed first)."""
        self.remove()
        for kind in ("units", "progress", "windows", "local", "rows"):
            (self.folder / kind).mkdir(parents=True)
        write_text(self.folder / "plan.json", json.dumps({"version": VERSION, **plan}, indent=1))

    def stamp(self) -> dict[str, str] | None:
        """The prediction's stamp (`provenance`), written into each of its outputs."""
        return self.plan().get("stamp")

    def note(self, **items: Any) -> None:
        """Add to the plan what is known only once the work started (the normalisation)."""
        write_text(self.folder / "plan.json", json.dumps({**self.plan(), **items}, indent=1))

    def check_same(self, fingerprint: dict[str, Any], partial: bool = False) -> None:
        """Refuse to resume a prediction made with other settings: its blocks would not fit. `partial`:
        only the settings in `fingerprint` are compared (those known before the model loads)."""
        recorded = self.plan().get("fingerprint", {})
        keys = set(fingerprint) if partial else {*recorded, *fingerprint}
        differ = sorted(k for k in keys if recorded.get(k) != fingerprint.get(k))
        if differ:
            raise ConfigError(
                f"--resume: {self.folder} was started with other settings ({', '.join(differ)} differ); "
                "give the same ones, or --overwrite to start again"
            )

    def record(
        self, kind: str, index: int, record: dict[str, Any], arrays: dict[str, np.ndarray] | None = None
    ):
        """Block `index` of phase `kind` is done: its record (and arrays, e.g. counts of ids)."""
        if arrays:
            self.save_arrays(f"{kind}/{index:05d}.npz", arrays)
        write_text(self.folder / kind / f"{index:05d}.json", json.dumps(record))

    def save_arrays(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        atomic_write(self.folder / name, lambda tmp: _save_npz(tmp, arrays))

    def forget(self, kind: str, index: int) -> None:
        """Block `index`'s record of `kind` is obsolete (a finished unit's progress)."""
        for suffix in (".json", ".npz"):
            (self.folder / kind / f"{index:05d}{suffix}").unlink(missing_ok=True)

    def save_windows(self, outputs: dict[tuple[int, int], np.ndarray]) -> None:
        """Windows of the grid computed for a row that several ranks need, kept for a resumed job."""
        rows: dict[int, dict[str, np.ndarray]] = {}
        for (row, index), probability in outputs.items():
            rows.setdefault(row, {})[str(index)] = probability
        for row, arrays in rows.items():
            self.save_arrays(f"windows/{row:05d}-{min(map(int, arrays)):05d}.npz", arrays)

    def saved_windows(self, rows: set[int]) -> dict[tuple[int, int], np.ndarray]:
        found = {}
        for path in sorted((self.folder / "windows").glob("*.npz")):
            row = int(path.stem.split("-")[0])
            if row in rows:
                with np.load(path) as saved:
                    found.update({(row, int(index)): saved[index] for index in saved.files})
        return found

    def records(self, kind: str) -> dict[int, dict[str, Any]]:
        return {int(p.stem): json.loads(p.read_text()) for p in sorted((self.folder / kind).glob("*.json"))}

    def arrays(self, kind: str, index: int) -> dict[str, np.ndarray]:
        with np.load(self.folder / kind / f"{index:05d}.npz") as saved:
            return {name: saved[name] for name in saved.files}

    def verified(self, kind: str) -> dict[int, dict[str, Any]]:
        """The records of `kind` whose blocks read back with the bytes recorded; the others are
        forgotten, so their blocks are done again."""
        good = {}
        for index, record in self.records(kind).items():
            z0, z1 = record["z"]
            try:
                same = all(
                    crc(open_volume(self.folder / name)[z0:z1]) == value
                    for name, value in record["crc"].items()
                )
            except DataError:
                same = False
            if same:
                good[index] = record
            else:
                (self.folder / kind / f"{index:05d}.json").unlink(missing_ok=True)
        return good

    def describe(self) -> str:
        done, total = len(self.records("units")), len(self.plan().get("units", []))
        return f"stopped after {done} of {total} blocks"

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def refuse_unfinished(journal: Journal, image: Path) -> None:
    """Without --resume or --overwrite, an unfinished prediction is neither continued nor lost."""
    if journal.started:
        raise DataError(
            f"a previous prediction of {image} {journal.describe()} ({journal.folder}); "
            "--resume finishes it, --overwrite starts again"
        )
