"""Writing files safely: atomically (a reader, or a crash, sees the old file or the complete new one),
and never over an existing run or output (`numbered_path`). torch is imported only to save weights."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def replacing(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside `path` that replaces it when the block ends without error, and is
    removed otherwise: a reader, or a crash, sees the old file or the complete new one. The one place
    voxseg writes a file atomically; the file gets the usual permissions (mkstemp's are private, and a
    model on a shared lab server must be readable by the lab)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        make_public(tmp)
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def make_public(path: Path, folder: bool = False) -> None:
    """Give `path` the permissions of any new file or folder (temporary names are created private)."""
    Path(path).chmod((0o777 if folder else 0o666) & ~_umask())


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    with replacing(path) as tmp:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())


def numbered_path(base: Path, taken: Callable[[Path], bool] = Path.exists) -> Path:
    """`base` if it is free, else the first free `base_2`, `base_3`, ...: nothing is ever overwritten."""
    return next(path for path in _numbered(base) if not taken(path))


def _numbered(base: Path) -> Iterator[Path]:
    yield base
    n = 2
    while True:
        yield base.with_name(f"{base.name}_{n}")
        n += 1


def save_state_dict(state: dict[str, torch.Tensor], path: Path) -> None:
    """Plain tensors only, so `torch.load(path, weights_only=True)` reads it."""
    import torch

    plain = {k: v.detach().cpu().clone() for k, v in state.items()}
    atomic_write(path, lambda tmp: torch.save(plain, tmp))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def zip_folder(folder: Path) -> Path:
    """`<folder>.zip` beside the folder, holding the folder itself."""
    folder = Path(folder)
    target = folder.with_name(folder.name + ".zip")

    def write(tmp: Path) -> None:
        base = tmp.with_suffix("")
        try:
            made = shutil.make_archive(str(base), "zip", root_dir=folder.parent, base_dir=folder.name)
            os.replace(made, tmp)
        finally:  # a failed archive must not leave its own temporary file behind
            Path(str(base) + ".zip").unlink(missing_ok=True)

    atomic_write(target, write)
    return target


def sha256(path: Path) -> str:
    """Of a file's bytes; of a folder (a Zarr store), of every file's relative path and bytes in order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
