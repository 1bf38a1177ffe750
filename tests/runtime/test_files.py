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


def test_written_files_get_the_usual_permissions_not_private_ones(tmp_path) -> None:
    """A model on a shared lab server must be readable by the lab (mkstemp's files are mode 600)."""
    import os

    from voxseg.runtime.files import replacing, write_text

    umask = os.umask(0o022)
    try:
        write_text(tmp_path / "summary.json", "{}\n")
        with replacing(tmp_path / "model.onnx") as temp:
            temp.write_bytes(b"model")
    finally:
        os.umask(umask)
    assert (tmp_path / "summary.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "model.onnx").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "summary.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    from voxseg.runtime.files import replacing

    target = tmp_path / "best.pth"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(target) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("crash")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["best.pth"]
