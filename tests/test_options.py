"""The one option declaration: the command line, YAML, the napari form and the README come from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from voxseg.cli import build_parser
from voxseg.config import COMMAND_OPTIONS, TrainConfig, readme_tables
from voxseg.errors import ConfigError
from voxseg.napari.form import TRAIN_FORM
from voxseg.options import Option, options_of, parse_value

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "tune-threshold", "export"])
def test_the_readme_tables_are_the_declarations(command: str) -> None:
    """Regenerate with `.venv/bin/python scripts/update_readme_options.py` when an option changes."""
    text = README.read_text()
    start, end = rf"<!-- options {command}: generated.*?-->\n", rf"<!-- options {command}: end -->"
    block = re.search(f"{start}(.*?){end}", text, re.S)
    assert block is not None, f"README.md has no generated option table for voxseg {command}"
    assert block.group(1) == readme_tables()[command]


def test_every_option_is_fully_declared() -> None:
    for name, opt, _ in options_of(TrainConfig):
        assert opt.help and opt.label and opt.section, name


def test_every_option_is_a_flag_with_its_default_in_the_help() -> None:
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    helps = {action.dest: action.help for action in train._actions if action.option_strings}
    for name, opt, default in options_of(TrainConfig):
        assert name in helps
        says_default = opt.required or opt.kind == "bool" or (default is None and opt.default_text is None)
        assert says_default or "(default " in helps[name], name
        assert "`" not in helps[name]
    assert set(COMMAND_OPTIONS) <= set(helps)


@pytest.mark.parametrize(
    ("command", "required", "optional"),
    [
        ("train", ["--images DIR", "--labels DIR"], ["--val-images DIR"]),
        ("predict", ["--input PATH", "--output DIR"], ["--model NAME"]),
        ("evaluate", ["--pred DIR", "--labels DIR"], ["--json FILE"]),
        ("export", ["--output PATH"], ["--format FORMAT"]),
    ],
)
def test_the_usage_line_marks_required_options(command: str, required: list, optional: list, capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    out = capsys.readouterr().out
    usage = " ".join(out.split("\n\n")[0].split())  # the usage line, unwrapped
    for shown in required:
        assert f" {shown}" in usage and f"[{shown}" not in usage, (shown, usage)
    for shown in optional:
        assert f"[{shown}" in usage, (shown, usage)
    assert "(required" in out
    if command == "train":  # the usage line marks --labels as required: the text says when it is not
        assert "(with --model WNet3D, from images alone)" in " ".join(out.split())
        assert "(required unless --model WNet3D)" in " ".join(out.split())


def test_a_no_flag_says_it_turns_off_what_its_help_describes(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    helps = " ".join(capsys.readouterr().out.split())
    for flag in ("--no-augment", "--no-compile", "--no-fast-kernels", "--no-tensorboard"):
        assert f"{flag} turn off (on by default): " in helps, flag
    assert "turns it off" not in helps
    assert "| `--no-augment` | off | turn off (on by default): " in README.read_text()  # the flag's own


def test_flags_and_yaml_build_the_same_config(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("images: a\nlabels: b\npatch-size: 16,32,32\nno_such: 1\naugment: false\n")
    from_yaml = TrainConfig.from_yaml(path)
    with pytest.raises(ConfigError, match="unknown option.*no_such"):
        from_yaml.resolved()
    args = build_parser().parse_args(
        ["train", "--images", "a", "--labels", "b", "--patch-size", "16,32,32", "--no-augment"]
    )
    from voxseg.cli import config_from_args

    path.write_text("images: a\nlabels: b\npatch-size: 16,32,32\naugment: false\n")
    assert config_from_args(args).resolved() == TrainConfig.from_yaml(path).resolved()


def test_the_form_shows_every_option() -> None:
    assert {f.name for f in TRAIN_FORM.fields} == {
        name for name, opt, _ in options_of(TrainConfig) if opt.in_form
    }


def test_resolving_leaves_the_callers_config_alone() -> None:
    config = TrainConfig(images="a", labels="b", patch_size=16, model="segresnet")
    resolved = config.resolved()
    assert (config.patch_size, config.model) == (16, "segresnet")
    assert (resolved.patch_size, resolved.model) == ((16, 16, 16), "SegResNet")


@pytest.mark.parametrize(
    ("opt", "value", "expected"),
    [
        (Option("h", "S", "L", kind="int", low=1), "3", 3),
        (Option("h", "S", "L", kind="int", low=1, auto=True), " Auto ", "auto"),
        (Option("h", "S", "L", kind="float", low=0, high=1), "0.5", 0.5),
        (Option("h", "S", "L", kind="size"), "8x16x32", (8, 16, 32)),
        (Option("h", "S", "L", optional=True), "  ", None),
    ],
)
def test_parse_value_normalises(opt: Option, value: object, expected: object) -> None:
    assert parse_value("x", opt, value) == expected


@pytest.mark.parametrize(
    ("opt", "value", "message"),
    [
        (Option("h", "S", "L", kind="int", low=1), "2.5", "--x: expected an integer, got '2.5'"),
        (Option("h", "S", "L", kind="int", low=1), "1e3", "--x: expected an integer, got '1e3'"),
        (Option("h", "S", "L", kind="int", low=1), 0, "--x: got 0, but it must be at least 1"),
        (
            Option("h", "S", "L", kind="float", low=0, high=0.9),
            "1",
            "--x: got 1, but it must be between 0 and 0.9",
        ),
        (
            Option("h", "S", "L", kind="float", low=0, open_low=True),
            -1,
            "--x: got -1, but it must be above 0",
        ),
        (
            Option("h", "S", "L", kind="float", low=0, high=1, open_high=True),
            1,
            "--x: got 1, but it must be at least 0 and below 1",
        ),
        (Option("h", "S", "L", kind="float", low=0, open_low=True), "nan", "--x: expected a finite number"),
        (Option("h", "S", "L", kind="bool"), "yes", "--x: expected true or false, got 'yes'"),
        (Option("h", "S", "L", kind="choice", choices=("a", "b")), "c", "--x: 'c' is not one of a, b"),
        (Option("h", "S", "L", required=True), None, "--x is required"),
    ],
)
def test_parse_value_names_the_option(opt: Option, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_value("x", opt, value)
