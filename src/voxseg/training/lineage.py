"""Where a run came from: the run it fine-tunes (`--from`), the planes it learned from, and a copy of
the images and labels it learned from, so a round of corrections can be rerun after napari is closed.

A round's inputs are small (one volume and its sparse labels), and in napari they exist nowhere else;
they are copied into `<run>/inputs/images`, `<run>/inputs/labels` (and `val_images`, `val_labels`) unless
together they pass
`MAX_KEPT_BYTES` (a whole-brain volume stays where it is: its path and sha256 are in run.json).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voxseg.data.labels import IGNORED
from voxseg.runtime.files import sha256

if TYPE_CHECKING:
    from voxseg.training.setup import PreparedRun

log = logging.getLogger("voxseg")

AXES = "ZYX"
INPUTS = "inputs"
MAX_KEPT_BYTES = 4 << 30
#: label files larger than this (voxels) are not searched for reviewed planes
MAX_PLANE_SCAN = 1 << 27


def reviewed_planes(label: np.ndarray) -> dict[str, list[int]]:
    """Along each axis, the planes annotated whole (a plane reviewed in napari is; a stroke is not)."""
    annotated = label != IGNORED
    planes = {}
    for axis, name in enumerate(AXES):
        others = tuple(a for a in range(3) if a != axis)
        whole = np.flatnonzero(annotated.all(axis=others))
        if len(whole):
            planes[name] = [int(i) for i in whole]
    return planes


def lineage(prepared: PreparedRun) -> dict[str, Any]:
    """run.json's `lineage`: the parent run (and its own parent), and what each label file annotates."""
    card: dict[str, Any] = {}
    if prepared.config.from_run is not None:
        card["parent"] = _parent(prepared.config.from_run)
    if prepared.config.reading().label_map.has_ignored:
        labels = dict.fromkeys(path for role, path in prepared.files if role.endswith("label"))
        card["annotated"] = [_annotated(path, prepared) for path in labels]  # planes that validate: once
    config = prepared.config
    if config.val_labels is not None and config.val_labels == config.labels:
        card["validation"] = "its own training labels (optimistic: no voxel was held out)"
    return card


def _annotated(path: Path, prepared: PreparedRun) -> dict[str, Any]:
    """The voxels and whole planes a sparse label file annotates, read as the run read it (before
    validation blocks were cut out of it, which would break its planes)."""
    from voxseg.io.formats import open_volume

    reading = prepared.config.reading()
    stored = open_volume(path, reading.label_key, reading.level, None, reading.timepoint, reading.series)
    if stored.size > MAX_PLANE_SCAN:
        return {"label": path.name, "voxels": None, "planes": {}}
    classes = reading.label_map.classes(np.asarray(stored[:]), path)
    return {"label": path.name, "voxels": int((classes != IGNORED).sum()), "planes": reviewed_planes(classes)}


def _parent(run: Path) -> dict[str, Any]:
    summary, card = _json(run / "summary.json"), _json(run / "run.json")
    return {
        "run": str(run),
        "model": summary.get("model"),
        "best_val_dice": summary.get("best_val_dice"),
        "threshold": summary.get("threshold"),
        "weights_sha256": sha256(run / "best.pth"),
        "parent": card.get("lineage", {}).get("parent", {}).get("run"),  # the chain, one link back
    }


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def keep_inputs(run_dir: Path, prepared: PreparedRun) -> dict[str, str] | None:
    """Copy every input into `<run>/inputs/`, in a folder per option (`images`, `labels`, `val_images`,
    `val_labels`), so the copies pair and split as the originals did: {option: folder in the run},
    or None when they are too large to copy."""
    config = prepared.config
    folders = {"images": config.images, "labels": config.labels}
    folders |= {"val_images": config.val_images, "val_labels": config.val_labels}
    size = sum(_size(path) for _, path in prepared.files)
    if size > MAX_KEPT_BYTES:
        log.warning(
            "inputs: %.1f GB of input files not copied into the run folder (run.json has their sha256)",
            size / 1e9,
        )
        return None
    kept = {}
    for _, path in prepared.files:
        name, folder = next((n, f) for n, f in folders.items() if f is not None and path.is_relative_to(f))
        copied = run_dir / INPUTS / name / path.relative_to(folder)
        copied.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, copied)
        kept[name] = f"{INPUTS}/{name}"
    for name, same in (("val_images", "images"), ("val_labels", "labels")):
        if folders[name] is not None and folders[name] == folders[same]:  # a fine-tune's planes validate too
            kept[name] = kept[same]
    log.info("inputs: the images and labels copied into %s", run_dir / INPUTS)
    return kept


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
