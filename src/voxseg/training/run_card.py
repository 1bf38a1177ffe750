"""`run.json`: what produced a run, enough to reproduce or audit it.

Versions (voxseg, Python, torch, MONAI, CUDA), the device, the command line, the resolved options,
the sha256, shape and voxel size of every input, the training voxel size, the split, and the final
metrics. Written when the run
starts and completed when it ends; `voxseg info RUN_DIR` prints it.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

from voxseg.io.formats import describe_spacing
from voxseg.runtime.files import sha256, write_json
from voxseg.training.events import Event, RunEnd, RunStarted
from voxseg.training.lineage import lineage
from voxseg.version import __version__

NAME = "run.json"


def _input(role: str, path: Path, reading: Any) -> dict[str, Any]:
    from voxseg.io.formats import open_volume

    label = role.endswith("label")
    key = reading.label_key if label else reading.image_key
    channel = None if label else reading.channel
    volume = open_volume(path, key, reading.level, channel, reading.timepoint, reading.series)
    size = volume.voxel_size
    return {
        "role": role,
        "path": str(path),
        "sha256": sha256(path),
        "shape": list(volume.shape),
        "voxel_size_um": None if size is None else list(size),
    }


def _versions() -> dict[str, str | None]:
    import monai
    import numpy
    import torch

    return {
        "voxseg": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
    }


def _device_name(device: Any) -> str:
    import torch

    if getattr(device, "type", "") == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


class RunCard:
    """Listener that writes run.json at the start and completes it at the end."""

    def __init__(self, run_dir: Path, prepared: Any) -> None:
        self.path = Path(run_dir) / NAME
        reading = prepared.config.reading()
        self.card: dict[str, Any] = {
            "versions": _versions(),
            "device": {"name": str(prepared.device), "model": _device_name(prepared.device)},
            "command": sys.argv,
            "options": prepared.config.to_dict(),
            "inputs": [_input(role, path, reading) for role, path in prepared.files],
            "voxel_size_um": None if prepared.voxel_size is None else list(prepared.voxel_size),
            "split": {
                "train": [v.name for v in prepared.train_volumes],
                "validation": [v.name for v in prepared.val_volumes],
                "how": prepared.validation,
                "window": list(prepared.window),
            },
            "parallel": {"processes": prepared.parallel.world, "backend": prepared.parallel.backend},
        }
        history = lineage(prepared)
        if history:
            self.card["lineage"] = history

    def keep_inputs(self, folders: dict[str, str] | None) -> None:
        """Record where the copies of the inputs are, by option (None: too large to copy)."""
        self.card.setdefault("lineage", {})["inputs"] = folders

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.card["start_epoch"] = event.start_epoch
            write_json(self.path, self.card)
        elif isinstance(event, RunEnd):
            self.card["result"] = event.summary
            write_json(self.path, self.card)


def describe(run_dir: Path) -> str:
    """`voxseg info RUN_DIR`: the run card as a few readable lines."""
    import json

    from voxseg.errors import DataError

    path = Path(run_dir) / NAME
    if not path.is_file():
        raise DataError(f"RUN_DIR: {path} does not exist (runs from before voxseg wrote run cards have none)")
    card = json.loads(path.read_text())
    options, result = card.get("options", {}), card.get("result", {})
    versions = ", ".join(f"{k} {v}" for k, v in card.get("versions", {}).items() if v)
    voxels = card.get("voxel_size_um")
    dice, threshold = _rounded(result.get("best_val_dice")), _rounded(result.get("threshold"))
    lines = [
        f"run       {Path(run_dir).resolve()}",
        f"status    {result.get('status', 'running')}{_why(result)}; best validation Dice {dice} "
        f"(epoch {result.get('best_epoch')}{_optimistic(card)}), threshold {threshold}",
        f"model     {options.get('model')}, loss {options.get('loss')}, epochs {options.get('epochs')}, "
        f"patch {card.get('split', {}).get('window')}, batch {options.get('batch_size')}",
        f"device    {card.get('device', {}).get('name')} ({card.get('device', {}).get('model')}), "
        f"{card.get('parallel', {}).get('processes', 1)} process(es)",
        f"voxels    {describe_spacing(tuple(voxels) if voxels else None)}",
        f"versions  {versions}",
        f"command   {' '.join(card.get('command', []))}",
        f"train     {', '.join(card.get('split', {}).get('train', []))}",
        f"validate  {', '.join(card.get('split', {}).get('validation', []))}",
        "inputs",
        *(
            f"  {i['sha256'][:16]}…  {i['role']:<31} {i['shape']}  {i['path']}"
            for i in card.get("inputs", [])
        ),
        *_lineage_lines(card.get("lineage", {}), Path(run_dir)),
    ]
    return "\n".join(lines)


def _lineage_lines(lineage: dict[str, Any], run_dir: Path) -> list[str]:
    """The parent run, the planes each volume had annotated, and how to train the round again."""
    lines = []
    parent = lineage.get("parent")
    if parent:
        lines.append(
            f"parent    {parent['run']} ({parent.get('model')}, best validation Dice "
            f"{_rounded(parent.get('best_val_dice'))})"
        )
    for volume in lineage.get("annotated", []):
        planes = "; ".join(f"{axis} {', '.join(map(str, found))}" for axis, found in volume["planes"].items())
        lines.append(
            f"reviewed  {volume['label']}: {planes or 'no whole plane'} ({volume['voxels'] or '?'} voxels)"
        )
    if lineage.get("inputs"):
        run = run_dir.resolve()
        kept = " ".join(
            f"--{name.replace('_', '-')} {run / folder}" for name, folder in lineage["inputs"].items()
        )
        lines.append(f"again     voxseg train --config {run / 'config.yaml'} {kept} --run-name NEW")
    return lines


def _why(result: dict[str, Any]) -> str:
    return f" ({result['reason']})" if result.get("reason") else ""


def _optimistic(card: dict[str, Any]) -> str:
    """A run that validated on its own training labels (a fine-tune's few reviewed planes) says so."""
    validation = card.get("lineage", {}).get("validation")
    return f"; validated on {validation}" if validation else ""


def _rounded(value: Any) -> Any:
    """Scores to three decimals: the card stores them exact, a reader wants 0.975, not 0.9750528052169076."""
    return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else value
