"""Atomic writes: a crash mid-write must leave the previous file (e.g. best.pth) intact."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from voxseg.runtime.files import atomic_write, save_state_dict, write_json, write_text, zip_folder


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json(path, {"status": "running"})

    def crash(tmp: Path) -> None:
        tmp.write_text("half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, crash)
    assert path.read_text() == '{\n  "status": "running"\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_state_dict_loads_with_weights_only(tmp_path: Path) -> None:
    model = torch.nn.Conv3d(1, 2, 3)
    save_state_dict(model.state_dict(), tmp_path / "w.pth")
    state = torch.load(tmp_path / "w.pth", weights_only=True)
    assert set(state) == {"weight", "bias"}
    assert torch.equal(state["weight"], model.weight.detach())


def test_zip_folder_holds_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    (folder / "plots").mkdir(parents=True)
    write_text(folder / "a.txt", "A")
    write_text(folder / "plots" / "b.txt", "B")
    archive = zip_folder(folder)
    assert archive == tmp_path / "run.zip"
    with zipfile.ZipFile(archive) as handle:
        assert handle.read("run/a.txt") == b"A" and handle.read("run/plots/b.txt") == b"B"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.zip"]
