"""The house rules, checked on the source: the core never imports a face or the package root, Qt
stays inside the napari package, and the command line answers without importing torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "voxseg"
#: the headless core: knows nothing of the command line, the console, napari or Qt
CORE = (
    "accel",
    "data",
    "inference",
    "models",
    "training",
    "losses.py",
    "options.py",
    "config.py",
    "errors.py",
)
FACES = ("voxseg.cli", "voxseg.console", "voxseg.napari", "voxseg.api", "voxseg.demo")
QT = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt")


def _modules(*parts: str) -> list[Path]:
    files = []
    for part in parts:
        path = SOURCE / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _where(path: Path) -> str:
    return str(path.relative_to(SOURCE)) if path.is_relative_to(SOURCE) else path.name


def _violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{_where(path)}:{line} imports {module}"
        for path in files
        for line, module in _imports(path)
        if any(module == name or module.startswith(name + ".") for name in forbidden)
    ]


def test_the_core_imports_no_face() -> None:
    assert _violations(_modules(*CORE), FACES) == []


def test_no_module_imports_the_package_root() -> None:
    every = [p for p in _modules(".") if p.name != "__init__.py" or p.parent != SOURCE]
    root_imports = [
        f"{path.relative_to(SOURCE)}:{line}"
        for path in every
        for line, module in _imports(path)
        if module == "voxseg"
    ]
    assert root_imports == []


def test_qt_and_napari_stay_in_the_napari_package() -> None:
    outside = [p for p in _modules(".") if "napari" not in p.relative_to(SOURCE).parts]
    assert _violations(outside, QT) == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The rules above must be able to fail."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from voxseg.console import ConsoleReporter\n")
    assert _violations([module], FACES) == ["bad.py:2 imports voxseg.console"]


@pytest.mark.parametrize(
    "module", ["voxseg.cli", "voxseg.config", "voxseg.training.preflight", "voxseg.napari.form"]
)
def test_checking_options_imports_no_torch(module: str) -> None:
    """A typo is answered before torch and MONAI load (seconds)."""
    code = f"import sys, {module}; print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_training_loop_stays_short() -> None:
    """The engine reads as a sequence of named steps; helpers live in their own modules."""
    assert len((SOURCE / "training" / "engine.py").read_text().splitlines()) <= 250
