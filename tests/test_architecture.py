"""The house rules, checked on the source: the core never imports a face or the package root, Qt
stays inside the napari package, no import cycle between modules or packages, and the command line
answers without importing torch."""

from __future__ import annotations

import ast
import re
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
    "runtime",
    "io",
    "export",
    "options.py",
    "config",
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


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the voxseg modules it imports (at run time: `if TYPE_CHECKING:` blocks are not)."""
    files = {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target not in (name, root.name):
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def _packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    def unit(name: str) -> str:
        return ".".join(name.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for name, targets in graph.items():
        if "." in name:
            packages.setdefault(unit(name), set()).update(unit(t) for t in targets if unit(t) != unit(name))
    return packages


def test_no_import_cycle_between_modules_or_packages() -> None:
    """Every arrow points one way: faces → training / inference / export → data, io, models, runtime."""
    graph = _import_graph(SOURCE)
    assert _cycles(graph) == []
    assert _cycles(_packages(graph)) == []


def test_the_cycle_checker_sees_a_cycle(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "a").mkdir(parents=True)
    (root / "a" / "__init__.py").write_text("")
    (root / "a" / "x.py").write_text("from pkg.b import y\n")
    (root / "b").mkdir()
    (root / "b" / "__init__.py").write_text("")
    (root / "b" / "y.py").write_text("def f():\n    from ..a import x\n")
    graph = _import_graph(root)
    assert _cycles(graph) == [["pkg.a.x", "pkg.b.y"]]
    assert _cycles(_packages(graph)) == [["pkg.a", "pkg.b"]]


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


def test_scoring_imports_neither_the_model_nor_the_file_job() -> None:
    """`voxseg evaluate` scores masks without torch: scoring reads only the outputs' names and stamps."""
    scoring = _violations(_modules("inference/scoring"), ("voxseg.inference.model", "voxseg.inference.job"))
    assert scoring == []
    code = (
        "import sys, voxseg.inference.scoring.evaluate, voxseg.inference.scoring.pairing; "
        "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_training_loop_stays_short() -> None:
    """The engine reads as a sequence of named steps; helpers live in their own modules."""
    assert len((SOURCE / "training" / "engine.py").read_text().splitlines()) <= 250


DOCUMENT = SOURCE.parents[1] / "ARCHITECTURE.md"


def _documented_packages(text: str) -> dict[str, set[str]]:
    """ARCHITECTURE.md's package table: `| a, b | c, d (+ b: e) |` -> {a: {c, d}, b: {c, d, e}}."""
    start = text.index("| package | imports |")
    table: dict[str, set[str]] = {}
    for row in text[start:].splitlines()[2:]:
        if not row.startswith("|"):
            break
        names, imports = (cell.strip() for cell in row.strip("|").split("|"))
        shared, _, extra = imports.partition("(+")
        for name in (name.strip() for name in names.split(",")):
            own = extra.split(f"{name}:")[-1] if f"{name}:" in extra else ("" if ":" in extra else extra)
            table[name] = set(re.findall(r"[a-z_]+", shared.replace("only", ""))) | set(
                re.findall(r"[a-z_]+", own.split(";")[0])
            )
    return table


def test_the_documented_package_graph_is_the_real_one() -> None:
    """ARCHITECTURE.md's table names every package and exactly what each imports (`errors` aside)."""
    ground = {"errors", "torch", "and", "the", "libraries"}
    real = {
        name.removeprefix("voxseg."): {t.removeprefix("voxseg.") for t in targets} - {"errors"}
        for name, targets in _packages(_import_graph(SOURCE)).items()
        if name not in ("voxseg.__main__", "voxseg.version", "voxseg.errors")
    }
    documented = {
        name: imports - ground for name, imports in _documented_packages(DOCUMENT.read_text()).items()
    }
    assert sorted(documented) == sorted(real)
    assert {name: sorted(imports) for name, imports in documented.items()} == {
        name: sorted(imports) for name, imports in real.items()
    }


def test_every_module_the_architecture_names_exists() -> None:
    """A path in ARCHITECTURE.md (`inference/paths.py`, or a bare `checks.py` after its package) exists."""
    named = set(re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", DOCUMENT.read_text()))
    files = {str(path.relative_to(SOURCE.parents[1])) for path in SOURCE.parents[1].glob("*/**/*.py")}
    missing = [name for name in named if not any(f == name or f.endswith("/" + name) for f in files)]
    assert missing == []
