"""The `voxseg` command: bad input is one `error:` line, exit code 2, and nothing written."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from conftest import run_cli

from voxseg.cli import build_parser, config_from_args

Args = Callable[..., list[str]]
Dataset = Callable[..., tuple[Path, Path]]


def _assert_usage_error(code: int, err: str, results: Path) -> str:
    assert code == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert lines[0].startswith("error:")
    assert not results.exists() or not any(results.iterdir()), "nothing may be created on bad input"
    return lines[0]


def _data(root: Path, make_dataset: Dataset) -> tuple[Path, Path]:
    return make_dataset(root, n=2, size=16, cells=2)


def _missing(tmp: Path, make_dataset: Dataset, fast_args: Args) -> list[str]:
    return fast_args(tmp / "no_images", tmp / "no_labels", tmp / "results")


def _empty(tmp: Path, make_dataset: Dataset, fast_args: Args) -> list[str]:
    (tmp / "images").mkdir()
    _, labels = _data(tmp / "data", make_dataset)
    return fast_args(tmp / "images", labels, tmp / "results")


def _flat(tmp: Path, make_dataset: Dataset, fast_args: Args) -> list[str]:
    for folder in ("images", "labels"):
        (tmp / folder).mkdir()
        tifffile.imwrite(tmp / folder / "slice.tif", np.ones((16, 16), np.uint8))
    return fast_args(tmp / "images", tmp / "labels", tmp / "results")


def _mismatch(tmp: Path, make_dataset: Dataset, fast_args: Args) -> list[str]:
    images, labels = _data(tmp / "data", make_dataset)
    tifffile.imwrite(labels / "vol_01_label.tif", np.ones((16, 16, 12), np.uint8))
    return fast_args(images, labels, tmp / "results")


def _garbage(tmp: Path, make_dataset: Dataset, fast_args: Args) -> list[str]:
    images, labels = _data(tmp / "data", make_dataset)
    (images / "vol_01.tif").write_bytes(b"garbage, not a TIFF\n" * 10)
    return fast_args(images, labels, tmp / "results")


def _flag(**overrides: object) -> Callable[[Path, Dataset, Args], list[str]]:
    def build(tmp: Path, make_dataset: Dataset, fast_args: Args) -> list[str]:
        images, labels = _data(tmp / "data", make_dataset)
        return fast_args(images, labels, tmp / "results", **overrides)

    return build


def _unknown_flag(tmp: Path, make_dataset: Dataset, fast_args: Args) -> list[str]:
    images, labels = _data(tmp / "data", make_dataset)
    return [*fast_args(images, labels, tmp / "results"), "--no-such-flag"]


def _no_images_option(tmp: Path, make_dataset: Dataset, fast_args: Args) -> list[str]:
    return ["train", "--labels", str(tmp), "--results", str(tmp / "results")]


BAD_INPUTS = {
    "missing-folder": (_missing, "does not exist"),
    "empty-folder": (_empty, "--images"),
    "2d-files": (_flat, "3D"),
    "shape-mismatch": (_mismatch, "vol_01_label.tif"),
    "unreadable-file": (_garbage, "vol_01.tif"),
    "val-interval-0": (_flag(val_interval=0), "--val-interval"),
    "unknown-model": (_flag(model="NoSuchNet"), "--model"),
    "unknown-loss": (_flag(loss="nosuchloss"), "--loss"),
    "train-fraction-1.5": (_flag(train_fraction=1.5), "--train-fraction"),
    "patch-size-0": (_flag(patch_size="0"), "--patch-size"),
    "device-gpu": (_flag(device="gpu"), "--device"),
    "not-an-int": (_flag(epochs="three"), "--epochs"),
    "unknown-flag": (_unknown_flag, "--no-such-flag"),
    "images-missing": (_no_images_option, "--images"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_error_line_and_exit_2(
    case: str, tmp_path: Path, make_dataset: Dataset, fast_args: Args, capsys: pytest.CaptureFixture[str]
) -> None:
    build, expected = BAD_INPUTS[case]
    argv = build(tmp_path, make_dataset, fast_args)
    code = run_cli(argv)
    captured = capsys.readouterr()
    line = _assert_usage_error(code, captured.err, tmp_path / "results")
    assert expected in line
    assert captured.out == ""


def test_unknown_flag_hint_is_a_real_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(["train", "--images", str(tmp_path), "--no-such-flag"])
    assert "voxseg voxseg" not in capsys.readouterr().err


def test_existing_run_name_is_refused_and_left_untouched(
    tmp_path: Path, make_dataset: Dataset, fast_args: Args, capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = _data(tmp_path / "data", make_dataset)
    results = tmp_path / "results"
    existing = results / "keep"
    existing.mkdir(parents=True)
    (existing / "best.pth").write_bytes(b"precious weights")
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in existing.iterdir()}

    code = run_cli([*fast_args(images, labels, results), "--run-name", "keep"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "already exists" in err
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in existing.iterdir()} == before
    assert sorted(p.name for p in results.iterdir()) == ["keep"]


def test_flags_override_the_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("images: a\nlabels: b\nepochs: 5\nlr: 0.01\nval-interval: 3\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--epochs", "2", "--no-augment"])
    config = config_from_args(args).resolved()
    assert config.epochs == 2  # the flag wins
    assert config.lr == 0.01 and config.val_interval == 3  # the file's values stay
    assert config.augment is False
    assert config.images == Path("a").resolve()  # relative to the working directory


def test_unknown_key_in_yaml_via_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("images: a\nlabels: b\nlearning_rate: 0.1\n")
    code = run_cli(["train", "--config", str(path), "--results", str(tmp_path / "results")])
    line = _assert_usage_error(code, capsys.readouterr().err, tmp_path / "results")
    assert "learning_rate" in line


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(["train", "--config", str(tmp_path / "nope.yaml")])
    line = _assert_usage_error(code, capsys.readouterr().err, tmp_path / "results")
    assert "--config" in line and "nope.yaml" in line


def test_config_file_run_with_flag_override(
    tmp_path: Path, make_dataset: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real (one-epoch) run from --config: the YAML's options are used, the flag overrides one."""
    images, labels = _data(tmp_path / "data", make_dataset)
    results = tmp_path / "results"
    options = {
        "images": str(images),
        "labels": str(labels),
        "results": str(results),
        "run-name": "from_yaml",
        "epochs": 5,
        "patch-size": 16,
        "samples-per-image": 1,
        "batch-size": 1,
        "workers": 0,
        "device": "cpu",
        "augment": False,
        "lr": 0.002,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(options))
    code = run_cli(["train", "--config", str(path), "--epochs", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "run completed" in out and str(results / "from_yaml") in out
    saved = yaml.safe_load((results / "from_yaml" / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["lr"] == 0.002 and saved["augment"] is False
    rows = (results / "from_yaml" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2  # header + the one epoch the flag asked for


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--version"]) == 0
    assert capsys.readouterr().out.startswith("voxseg 0.1.0")


def test_python_m_voxseg_bad_input_subprocess(tmp_path: Path) -> None:
    """The real entry point: no traceback, one line, exit 2 (as scripts and CI see it)."""
    results = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxseg",
            "train",
            "--images",
            str(tmp_path / "missing"),
            "--labels",
            str(tmp_path / "missing"),
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = _assert_usage_error(proc.returncode, proc.stderr, results)
    assert "--images" in line and "does not exist" in line
    assert proc.stdout == ""


def test_every_command_is_generated_from_its_declaration(capsys: pytest.CaptureFixture[str]) -> None:
    """demo, info and weights fetch too: the help gives the demo's real number of epochs, and a bad
    value is the same one error line and exit 2 as any other option."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    assert "(default 12)" in " ".join(capsys.readouterr().out.split())
    assert run_cli(["demo", "--epochs", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --epochs: got 0, but it must be at least 1"
    assert run_cli(["weights", "fetch", "SegResNetDS"]) == 2
    assert capsys.readouterr().err.startswith("error: MODEL: SegResNetDS has no published weights")
    assert run_cli(["info"]) == 2


def test_a_mistyped_flag_names_the_flag_it_was_meant_to_be_and_the_command_s_help(capsys) -> None:
    assert run_cli(["train", "--lables", "x"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --lables x" in err and "did you mean --labels" in err
    assert "(see voxseg train --help)" in err  # the command's help, not the top level's
    assert run_cli(["predict", "RUN", "--instnaces=auto"]) == 2
    assert "did you mean --instances" in capsys.readouterr().err
    assert run_cli(["evaluate", "--frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --frobnicate (see voxseg evaluate --help)" in err  # no wild guess
