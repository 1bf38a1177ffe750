"""`voxseg` command line: argument parsing -> TrainConfig -> train(); exit codes for scripts.

Exit codes: 0 completed, 1 training failed, 2 bad input or options (one `error:` line, nothing
created), 130 stopped by Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from voxseg.config import RESUME_OVERRIDES, TrainConfig
from voxseg.errors import ConfigError, VoxsegError
from voxseg.version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 130
_DEFAULTS = TrainConfig()


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line, like every other input error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a flag; unset flags keep the YAML's or the default value."""
    d = _DEFAULTS
    S = argparse.SUPPRESS
    parser.add_argument("--config", type=Path, default=S, help="YAML file of options (flags override it)")
    data = parser.add_argument_group("data")
    data.add_argument("--images", default=S, help="folder of 3D .tif/.tiff images")
    data.add_argument(
        "--labels",
        default=S,
        help="folder of 3D label .tif/.tiff, named like the images "
        "(optionally with _label, _labels, _mask, _gt suffix)",
    )
    data.add_argument("--results", default=S, help=f"folder that receives run folders (default {d.results})")
    data.add_argument("--val-images", default=S, help="explicit validation images (instead of a split)")
    data.add_argument("--val-labels", default=S, help="explicit validation labels")
    data.add_argument(
        "--train-fraction",
        type=float,
        default=S,
        help=f"share of volumes used for training (default {d.train_fraction})",
    )
    data.add_argument("--run-name", default=S, help="run folder name (default <model>_<YYYYmmdd-HHMMSS>)")
    data.add_argument("--zip", action="store_true", default=S, help="also write <run-name>.zip")
    data.add_argument(
        "--pretrained",
        action="store_true",
        default=S,
        help="start from napari-cellseg3d's published weights (downloaded once, cached)",
    )
    data.add_argument(
        "--weights",
        default=S,
        help="start from a weights file (.pth/.pt state dict, .safetensors, voxseg checkpoint)",
    )
    patches = parser.add_argument_group("patches and augmentation")
    patches.add_argument(
        "--patch-size",
        default=S,
        help="N, Z,Y,X, or auto: the largest that fits the device's memory (default 64)",
    )
    patches.add_argument(
        "--samples-per-image",
        type=int,
        default=S,
        help=f"patches drawn from each volume per epoch (default {d.samples_per_image})",
    )
    patches.add_argument(
        "--foreground-share",
        type=float,
        default=S,
        help="share of patches centred on foreground (default 0.33)",
    )
    patches.add_argument(
        "--whole-volumes", action="store_true", default=S, help="train on whole volumes instead of patches"
    )
    patches.add_argument(
        "--pad-pow2",
        action="store_true",
        default=S,
        help="pad sizes to powers of two, as napari-cellseg3d did",
    )
    patches.add_argument(
        "--no-augment", dest="augment", action="store_false", default=S, help="turn augmentation off"
    )
    training = parser.add_argument_group("training")
    training.add_argument(
        "--model", default=S, help=f"VNet, SegResNet, TRAILMAP_MS, TRAILMAP, SwinUNETR (default {d.model})"
    )
    training.add_argument(
        "--loss",
        default=S,
        help=f"dice, focal, dice-focal, generalized-dice, dice-ce, tversky (default {d.loss})",
    )
    training.add_argument("--lr", type=float, default=S, help=f"Adam learning rate (default {d.lr:g})")
    training.add_argument(
        "--batch-size",
        default=S,
        help=f"N, or auto: the largest that fits the device's memory (default {d.batch_size})",
    )
    training.add_argument("--epochs", type=int, default=S, help=f"default {d.epochs}")
    training.add_argument(
        "--val-interval", type=int, default=S, help=f"validate every N epochs (default {d.val_interval})"
    )
    training.add_argument("--seed", type=int, default=S, help=f"default {d.seed}")
    training.add_argument("--device", default=S, help="auto, cpu, cuda, cuda:N or mps (default auto)")
    training.add_argument(
        "--scheduler",
        default=S,
        help="none, plateau (halve the LR after 5 validations without a better Dice), cosine, poly "
        "(default plateau)",
    )
    training.add_argument("--warmup-epochs", type=int, default=S, help="linear LR warm-up epochs (default 0)")
    training.add_argument(
        "--early-stop-patience",
        type=int,
        default=S,
        help="stop after N validations without a better Dice (default 0: never)",
    )
    training.add_argument(
        "--resume",
        type=Path,
        default=S,
        help="continue RUN_DIR from its last completed epoch (with --epochs N to extend it)",
    )
    training.add_argument(
        "--workers",
        type=int,
        default=S,
        help="data-loading processes (default: chosen from the cores, memory and device)",
    )
    training.add_argument(
        "--precision",
        default=S,
        help="auto (bf16 where the CPU/GPU computes it natively, fp16 on older GPUs, else fp32), "
        "fp32, bf16, fp16 (default auto)",
    )
    training.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        default=S,
        help="do not torch.compile the model on CUDA (never done on the CPU)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="voxseg", description="Train 3D cell-segmentation networks on TIFF volumes.")
    parser.add_argument("--version", action="version", version=f"voxseg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train_command = commands.add_parser("train", help="train a model from image and label folders")
    _add_train_options(train_command)
    demo = commands.add_parser("demo", help="train on the bundled nuclei dataset (nothing to supply)")
    demo.add_argument("--results", type=Path, default=Path("results"), help="default results")
    demo.add_argument("--epochs", type=int, default=None, help="default: the demo's own setting")
    demo.add_argument("--device", default="auto", help="default auto")
    demo.add_argument("--run-name", default=None, help="default demo_<model>_<date>")
    weights = commands.add_parser("weights", help="list or pre-fetch napari-cellseg3d's published weights")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True, parser_class=_Parser)
    weights_commands.add_parser("list", help="models with published weights, their source and cache state")
    fetch = weights_commands.add_parser("fetch", help="download a model's weights into the cache now")
    fetch.add_argument("model", help="TRAILMAP_MS, SegResNet, VNet or SwinUNETR")
    return parser


def _weights_command(args: argparse.Namespace) -> int:
    """`voxseg weights list|fetch`: fill the cache ahead of time (e.g. on a login node with internet)."""
    import logging

    from voxseg.models.download import cache_dir, fetch_weights, weights_table

    if args.weights_command == "fetch":
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        path = fetch_weights(args.model)
        print(f"voxseg: weights for {args.model} ready at {path}")
        return EXIT_OK
    print(f"cache: {cache_dir()} (set VOXSEG_CACHE to move it; VOXSEG_WEIGHTS_URL to use a mirror)")
    for row in weights_table():
        state = f"cached, {row['size'] / 1e6:.1f} MB" if row["cached"] else "not cached"
        print(f"{row['model']:<12} {state:<20} {row['url']}")
    return EXIT_OK


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """YAML first (if any), then every flag the user typed; validation happens in the engine."""
    given = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume")}
    if hasattr(args, "resume"):
        extra = sorted(set(given) - set(RESUME_OVERRIDES)) + (["config"] if hasattr(args, "config") else [])
        if extra:
            flags = ", ".join("--" + name.replace("_", "-") for name in extra)
            raise ConfigError(f"--resume continues a run with its own config.yaml; {flags} cannot change")
        return TrainConfig.for_resume(args.resume, given)
    from_file = TrainConfig.from_yaml(args.config) if hasattr(args, "config") else TrainConfig()
    return TrainConfig.from_dict({**from_file.to_dict(), **from_file._extra, **given})


def _run(config: TrainConfig, resume: Path | None = None) -> int:
    from voxseg.training.session import train

    result = train(config, progress=True, resume=resume)
    summary = result.summary
    best = summary.get("best_val_dice")
    best_text = (
        "no validation yet"
        if best is None
        else f"best validation Dice {best:.4f} (epoch {summary['best_epoch']})"
    )
    print(f"voxseg: run {result.status}, {best_text}, results in {result.run_dir}")
    return EXIT_STOPPED if result.status == "stopped" else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "weights":
            return _weights_command(args)
        if args.command == "demo":
            from voxseg.demo import demo_config

            config = demo_config(args.results, epochs=args.epochs, device=args.device, run_name=args.run_name)
        else:
            config = config_from_args(args)
        return _run(config, getattr(args, "resume", None))
    except VoxsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_STOPPED
    except Exception as exc:  # the run folder holds the traceback (train.log) and status `failed`
        print(f"error: training failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
