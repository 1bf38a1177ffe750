"""`voxseg` command line: options (generated from the one declaration) -> checks -> train().

Options, folders and file pairing are checked before torch is imported, so a typo is answered
at once. Exit codes: 0 completed, 1 training failed, 2 bad input or options (one `error:` line,
nothing created), 130 stopped (Ctrl-C, SIGTERM, SIGHUP). A console closed under a command (a
pipe whose reader exited) changes none of this: only the output is lost.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from voxseg.config import (
    COMMAND_OPTIONS,
    DemoConfig,
    EvaluateConfig,
    ExportConfig,
    FetchConfig,
    InfoConfig,
    PredictConfig,
    TrainConfig,
    TuneConfig,
)
from voxseg.errors import DataError, VoxsegError
from voxseg.options import add_arguments
from voxseg.version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line, like every other input error."""

    commands: dict[str, _Parser]  # the top-level parser's, by command name

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    def unrecognized(self, unknown: list[str]) -> NoReturn:
        """Refuse flags the command does not have, naming the ones they were probably meant to be:
        argparse reports them from the top-level parser, pointing at `voxseg --help`."""
        flags = [s for action in self._actions for s in action.option_strings if s.startswith("--")]
        hints = []
        for typed in (arg.split("=", 1)[0] for arg in unknown if arg.startswith("-")):
            close = difflib.get_close_matches(typed, flags, n=1, cutoff=0.75)
            hints += [f"did you mean {close[0]} for {typed}?"] if close else []
        self.error(f"unrecognized arguments: {' '.join(unknown)}" + ("; " + " ".join(hints) if hints else ""))


#: command -> (its one-line help, its options' declaration, options only the command line has)
COMMANDS: dict[str, tuple[str, type, dict]] = {
    "train": (
        "train a model from image and label folders (with --model WNet3D, from images alone)",
        TrainConfig,
        COMMAND_OPTIONS,
    ),
    "predict": ("segment 3D volumes (TIFF, Zarr, HDF5) with a trained model", PredictConfig, {}),
    "evaluate": ("score predictions against labels (Dice, IoU, instance F1)", EvaluateConfig, {}),
    "tune-threshold": ("tune a finished run's threshold on its validation volumes", TuneConfig, {}),
    "export": (
        "write a run's network as TorchScript, ONNX or a BioImage Model Zoo package",
        ExportConfig,
        {},
    ),
    "info": ("what produced a run: its run card (run.json), readably", InfoConfig, {}),
    "demo": ("train on the bundled nuclei dataset (nothing to supply)", DemoConfig, {}),
}


def build_parser() -> _Parser:
    parser = _Parser(
        prog="voxseg", description="Train and apply 3D cell-segmentation networks on microscopy volumes."
    )
    parser.add_argument("--version", action="version", version=f"voxseg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (text, config_class, extra) in COMMANDS.items():
        add_arguments(commands.add_parser(name, help=text, description=text), config_class, extra)
    parser.commands = commands.choices  # where a command's unrecognized flags are answered
    weights = commands.add_parser("weights", help="list or pre-fetch napari-cellseg3d's published weights")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True, parser_class=_Parser)
    weights_commands.add_parser("list", help="models with published weights, their source and cache state")
    fetch = weights_commands.add_parser("fetch", help="download a model's weights into the cache now")
    add_arguments(fetch, FetchConfig, {})
    return parser


def _options(config_class: type, args: argparse.Namespace) -> Any:
    """The command's checked options from the flags typed (the rest keep their defaults)."""
    ignored = ("command", "weights_command")
    return config_class.from_dict({k: v for k, v in vars(args).items() if k not in ignored}).resolved()


def _weights_command(args: argparse.Namespace) -> int:
    """`voxseg weights list|fetch`: fill the cache ahead of time (e.g. on a login node with internet)."""
    import logging

    from voxseg.models.download import cache_dir, fetch_weights, weights_table

    if args.weights_command == "fetch":
        model = _options(FetchConfig, args).model
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        path = fetch_weights(model)
        print(f"voxseg: weights for {model} ready at {path}")
        return EXIT_OK
    print(f"cache: {cache_dir()} (set VOXSEG_CACHE to move it; VOXSEG_WEIGHTS_URL to use a mirror)")
    for row in weights_table():
        state = f"cached, {row['size'] / 1e6:.1f} MB" if row["cached"] else "not cached"
        print(f"{row['model']:<12} {state:<20} {row['url']}")
    return EXIT_OK


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """YAML first (if any), then every flag the user typed; with --resume, the run's own config."""
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume")}
    if hasattr(args, "resume"):
        typed = {**given, **({"config": args.config} if hasattr(args, "config") else {})}
        return TrainConfig.for_resume(args.resume, typed)
    from_file = TrainConfig.from_yaml(args.config) if hasattr(args, "config") else TrainConfig()
    return TrainConfig.from_dict({**from_file.to_dict(), **from_file._extra, **given})


def _run(config: TrainConfig, resume: Path | None) -> int:
    """Train; under torchrun (WORLD_SIZE > 1) as one rank of a data-parallel job, rank 0 reporting."""
    from voxseg.training.preflight import preflight

    preflight(config, resume)  # options, folders and pairing, before torch is imported
    from voxseg.api import train
    from voxseg.runtime.distributed import from_environment, process_group
    from voxseg.training.summary import best_dice_text

    with process_group(from_environment()) as parallel:
        result = train(config, progress=parallel.is_main, resume=resume, parallel=parallel)
    if parallel.is_main:
        reason = result.summary["reason"]
        ended = result.status if result.status == "completed" else f"{result.status} ({reason})"
        print(f"voxseg: run {ended}, {best_dice_text(result.summary)}, results in {result.run_dir}")
    return EXIT_STOPPED if result.status == "stopped" else EXIT_OK


def _predict_command(args: argparse.Namespace) -> int:
    """Options are checked before torch is imported; then every volume is predicted in turn, under
    torchrun by all the ranks together (rank 0 reporting)."""
    config = _options(PredictConfig, args)
    from voxseg.inference.job.files import input_files

    input_files(config.input)  # a missing input is answered before the engine loads
    from voxseg.api import predict_with_console
    from voxseg.errors import Stopped
    from voxseg.runtime.distributed import from_environment, process_group

    with process_group(from_environment()) as parallel:
        try:
            results = predict_with_console(config, parallel)
        except Stopped as stopped:
            print(
                f"voxseg: {stopped}; finished blocks are kept: the same command with --resume finishes",
                file=sys.stderr,
            )
            return EXIT_STOPPED
    if not parallel.is_main:
        return EXIT_OK
    voxels = sum(r.voxels for r in results)
    seconds = sum(r.seconds for r in results)
    objects = [r.objects_found for r in results if r.objects_found is not None]
    found = f", {sum(objects)} objects" if objects else ""
    rate = voxels / max(seconds, 1e-9)
    print(
        f"voxseg: predicted {len(results)} volume(s), {voxels:,} voxels at {rate:,.0f} voxels/s{found}; "
        f"outputs in {config.output}"
    )
    return EXIT_OK


def _evaluate_command(args: argparse.Namespace) -> int:
    from voxseg.inference.scoring.evaluate import evaluate, format_table, write_json
    from voxseg.inference.scoring.pairing import pair_predictions

    config = _options(EvaluateConfig, args)
    assert config.pred is not None and config.labels is not None
    pairing = pair_predictions(
        config.pred, config.labels, config.label_key, label_name=config.label_name, strict=config.strict
    )
    if config.json is not None and config.json.exists() and not config.overwrite:
        raise DataError(f"--json: {config.json} already exists; give --overwrite to replace it")
    result = evaluate(pairing)
    print(format_table(result))
    if config.json is not None:
        write_json(config.json, result, overwrite=config.overwrite)
    return EXIT_OK


def _tune_command(args: argparse.Namespace) -> int:
    config = _options(TuneConfig, args)
    assert config.run is not None
    from voxseg.console import ConsoleReporter
    from voxseg.training.threshold import tune_threshold

    with ConsoleReporter():
        summary = tune_threshold(config.run)
    print(
        f"voxseg: threshold {summary['threshold']:.2f} (Dice {summary['threshold_dice']:.4f}) in {config.run}"
    )
    return EXIT_OK


def _export_command(args: argparse.Namespace) -> int:
    """Write the file, then say how to use it without voxseg (and, for a package, what it lacks)."""
    config = _options(ExportConfig, args)
    assert config.run is not None and config.output is not None
    if config.format == "bioimageio":
        from voxseg.export.bioimageio import export_bioimageio, package_notes

        package = export_bioimageio(
            config.run,
            config.output,
            config.weights,
            config.overwrite,
            authors=config.authors,
            license=config.license,
            cite=config.cite,
        )
        path = package.path
        print(
            f"voxseg: BioImage Model Zoo package written to {path} (check it with `bioimageio test {path}`)"
        )
        print("\n".join(package_notes(package)))
        return EXIT_OK
    from voxseg.export.formats import export, how_to_use

    done = export(config.run, config.format, config.output, config.weights, config.overwrite)
    shapes = ", ".join("×".join(map(str, shape)) for shape in done.checked_shapes)
    print(
        f"voxseg: {done.format} written to {done.path}; max |difference| to PyTorch "
        f"{done.max_abs_difference:.2e} on inputs {shapes}"
    )
    print("\n".join(how_to_use(done)))
    return EXIT_OK


def _info_command(run_dir: Path) -> int:
    from voxseg.training.run_card import describe

    print(describe(run_dir))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """The command, its console allowed to close under it: `voxseg train ... | head -1` trains to the
    end and exits 0 (see voxseg.console.ConsoleStream)."""
    from voxseg.console import closable_console

    with closable_console():
        return _command(argv)


def _command(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.commands[args.command].unrecognized(unknown)
    try:
        if args.command == "weights":
            return _weights_command(args)
        if args.command == "predict":
            return _predict_command(args)
        if args.command == "evaluate":
            return _evaluate_command(args)
        if args.command == "tune-threshold":
            return _tune_command(args)
        if args.command == "export":
            return _export_command(args)
        if args.command == "info":
            return _info_command(_options(InfoConfig, args).run)
        if args.command == "demo":
            from voxseg.demo import demo_config

            config = demo_config(_options(DemoConfig, args))
        else:
            config = config_from_args(args)
        return _run(config, getattr(args, "resume", None))
    except VoxsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_STOPPED
    except Exception as exc:  # a training run's folder holds the traceback (train.log), status `failed`
        what = {
            "predict": "prediction",
            "evaluate": "evaluation",
            "weights": "download",
            "export": "export",
            "tune-threshold": "threshold tuning",
        }.get(args.command, "training")
        print(f"error: {what} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
