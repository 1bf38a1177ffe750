"""`voxseg train`'s options, declared once (see `voxseg.options`): the command line, YAML, the napari
form and the README table come from here.

`resolved()` checks every option and returns a normalised copy (absolute paths, canonical names,
numbers as numbers) without touching the original; each message names the option as the command
line spells it. Nothing here imports torch, so the command line answers a typo at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import voxseg.config.finetune as finetune
import voxseg.config.self_supervised as wnet_options
import voxseg.config.shared as shared
from voxseg.config.train_data import TrainData
from voxseg.errors import ConfigError
from voxseg.losses import LOSS_NAMES, resolve_loss_name
from voxseg.models.registry import (
    MODEL_EPOCHS,
    MODEL_LEARNING_RATES,
    MODEL_NAMES,
    PUBLISHED_MODELS,
    SELF_SUPERVISED_MODELS,
    get_model_spec,
    resolve_model_name,
)
from voxseg.options import (
    AUGMENTATION,
    AUTO,
    TRAINING,
    Option,
    flag,
    option,
    options_of,
    parse_value,
    typed_flag,
)

if TYPE_CHECKING:
    from voxseg.data.checks import Reading
    from voxseg.losses import SelfSupervision

SCHEDULERS = ("none", "plateau", "cosine", "poly")


def _loss(name: Any) -> str:
    return AUTO if str(name).strip().lower() == AUTO else resolve_loss_name(name)


@dataclass
class TrainConfig(TrainData):
    """Everything a training run needs: its data (`TrainData`), then the patches, augmentation and
    schedule. Paths may be str or Path; `resolved()` normalises them."""

    # Dataset and augmentation
    whole_volumes: bool = option(
        False,
        help="train on whole volumes (padded to a common valid size) instead of patches",
        section=AUGMENTATION,
        label="Whole volumes",
        kind="bool",
    )
    patch_size: tuple[int, int, int] | str = option(
        AUTO,
        help="training patch and validation window, `N` or `Z,Y,X`, rounded up to the model's size rule; "
        "`auto`: 64 voxels along the finest axis and fewer along coarser ones, in proportion to the voxel "
        "size (about a cube in µm: 32×64×64 for 1.75×0.8×0.8 µm voxels), at most the smallest training "
        "volume; on a GPU, the largest such patch whose measured training-step memory fits its budget",
        section=AUGMENTATION,
        label="Patch size",
        kind="size",
        metavar="SIZE",
        auto=True,
    )
    samples_per_image: int | str = option(
        AUTO,
        help="patches drawn from each training volume per epoch; `auto`: 16 per epoch, or one pass over "
        "the training voxels when they are more, shared among the volumes by size",
        section=AUGMENTATION,
        label="Samples per image",
        kind="int",
        metavar="N",
        low=1,
        auto=True,
    )
    foreground_share: float = option(
        0.33,
        help="share of patches centred on a foreground voxel (nnU-Net's 0.33); the rest are uniform",
        section=AUGMENTATION,
        label="Foreground share",
        kind="float",
        metavar="F",
        low=0.0,
        high=1.0,
    )
    pad_pow2: bool = option(
        False,
        help="pad to powers of two as napari-cellseg3d did (65 → 128); by default the smallest valid size is "
        "used (65 → 72 for SegResNet)",
        section=AUGMENTATION,
        label="Pad to powers of two",
        kind="bool",
    )
    augment: bool = option(
        True,
        help="augmentation as nnU-Net's: flips, rotations, zoom, elastic deformation; noise, blur, "
        "brightness, contrast, low resolution and gamma",
        section=AUGMENTATION,
        label="Augmentation",
        kind="bool",
    )
    # Training
    model: str = option(
        "SegResNetDS",
        help="network: " + ", ".join(f"`{m}`" for m in MODEL_NAMES),
        section=TRAINING,
        label="Model",
        kind="choice",
        metavar="NAME",
        choices=MODEL_NAMES,
        parse=resolve_model_name,
    )
    loss: str = option(
        "auto",
        help="loss: "
        + ", ".join(f"`{n}`" for n in LOSS_NAMES)
        + " (the origin's names such as \"Dice-CE loss\" work too); `auto`: `dice-ce` (nnU-Net's; on "
        "held-out embryos it beat `dice`, see README), or `focal` when `--label-map`/`--ignore-label` "
        "leave voxels unannotated (a Dice over a few annotated planes overfits; see docs/formats.md)",
        section=TRAINING,
        label="Loss",
        kind="choice",
        metavar="NAME",
        choices=(AUTO, *LOSS_NAMES),
        parse=_loss,
    )
    lr: float | str = option(
        AUTO,
        help="Adam learning rate; `auto`: the model's ("
        + ", ".join(f"{lr:g} for {', '.join(names)}" for lr, names in MODEL_LEARNING_RATES.items())
        + ")",
        section=TRAINING,
        label="Learning rate",
        kind="float",
        metavar="X",
        low=0.0,
        open_low=True,
        auto=True,
    )
    batch_size: int | str = option(
        2,
        help="patches per optimisation step (validation runs twice as many windows at once); `auto`: the "
        "largest batch (≤ 16, ≤ patches per epoch) that fits the memory budget",
        section=TRAINING,
        label="Batch size",
        kind="int",
        metavar="N",
        low=1,
        auto=True,
    )
    epochs: int | str = option(
        AUTO,
        help="epochs to train; `auto`: the model's ("
        + "; ".join(f"{epochs} for {', '.join(names)}" for epochs, names in MODEL_EPOCHS.items())
        + "). With the automatic patches per epoch, 16 reach the plateau on one small volume in about a "
        "minute on 2 CPU cores (QCANet); on more data an epoch is one pass over it",
        section=TRAINING,
        label="Epochs",
        kind="int",
        metavar="N",
        low=1,
        auto=True,
        resumable=True,
    )
    val_interval: int = option(
        1,
        help="validate every N epochs, and always after the last epoch",
        section=TRAINING,
        label="Validation interval",
        kind="int",
        metavar="N",
        low=1,
    )
    seed: int = option(
        0,
        help="seeds the split, the patch positions, the augmentation and the weights",
        section=TRAINING,
        label="Seed",
        kind="int",
        metavar="N",
        low=0,
        high=2**32 - 1,
    )
    scheduler: str = option(
        "plateau",
        help="LR schedule: `none`, `plateau` (halve the LR after 5 validations without a better Dice, floor "
        "1e-6), `cosine` (to 1e-6 over the run), `poly` (nnU-Net's, power 0.9)",
        section=TRAINING,
        label="LR schedule",
        kind="choice",
        metavar="S",
        choices=SCHEDULERS,
    )
    warmup_epochs: int = option(
        0,
        help="linear LR warm-up over the first N epochs",
        section=TRAINING,
        label="Warm-up epochs",
        kind="int",
        metavar="N",
        low=0,
    )
    early_stop_patience: int = option(
        0,
        help="stop after N validations without a better Dice (0: never)",
        section=TRAINING,
        label="Early stop after",
        kind="int",
        metavar="N",
        low=0,
    )
    device: str = shared.device(TRAINING, training=True)
    workers: int | None = option(
        None,
        help="data-loading processes; automatic is 0 on machines with ≤ 2 cores (a worker would take a core "
        "from the training step), at most 2 on the CPU, up to cores − 1 with a GPU, and never more than a "
        "quarter of the free memory holds",
        section=TRAINING,
        label="Data workers",
        kind="int",
        metavar="N",
        low=0,
        optional=True,
        default_text="automatic",
        resumable=True,
    )
    threads: int | None = shared.threads(TRAINING, training=True)
    precision: str = shared.precision(TRAINING, training=True)
    compile: bool = option(
        True,
        help="`torch.compile` the model on CUDA (never on the CPU, where compiling costs more than it saves)",
        section=TRAINING,
        label="torch.compile (CUDA)",
        kind="bool",
        resumable=True,
    )
    fast_kernels: bool = shared.fast_kernels(TRAINING, training=True)
    sync_batchnorm: bool = option(
        False,
        help="under torchrun, batch normalisation over the global batch instead of each process's (PyTorch's "
        "SyncBatchNorm, GPUs only; for the models with batch norm: VNet, TRAILMAP_MS, TRAILMAP)",
        section=TRAINING,
        label="Sync batch norm (torchrun)",
        kind="bool",
        resumable=True,
    )
    tensorboard: bool = option(
        True,
        help="write TensorBoard event files to `<run>/tensorboard` (`tensorboard --logdir RESULTS` "
        "compares runs)",
        section=TRAINING,
        label="TensorBoard",
        kind="bool",
        resumable=True,
    )
    # Self-supervised (WNet3D): declared in config/self_supervised.py
    classes: int = wnet_options.classes()
    ncut_weight: float = wnet_options.ncut_weight()
    reconstruction_weight: float = wnet_options.reconstruction_weight()
    partition_weight: float = wnet_options.partition_weight()
    ncut_radius: int = wnet_options.ncut_radius()
    ncut_sigma_i: float = wnet_options.ncut_sigma_i()
    ncut_sigma_x: float = wnet_options.ncut_sigma_x()
    # Keys a YAML file or a face passed that are no option: refused by resolved(), never ignored.
    _extra: dict = field(default_factory=dict, repr=False, compare=False)

    def check(self, values: dict[str, Any]) -> None:
        from voxseg.data.labels import LabelMap

        LabelMap.parse(values["label_map"], values["ignore_label"])
        if values["from_run"] is not None:  # before `auto` is resolved: a fine-tune's differ
            finetune.inherit(values, DEFAULTS, lambda name, value: parse_value(name, OPTIONS[name], value),
                             lambda name: FLAGS[name])  # fmt: skip
        if values["pretrained"] and values["weights"] is not None:
            raise ConfigError("--pretrained and --weights exclude each other: choose one starting point")
        if values["pretrained"] and values["model"] not in PUBLISHED_MODELS:
            raise ConfigError(
                f"--pretrained: napari-cellseg3d published no weights for {values['model']}; choose --model "
                + " or ".join(PUBLISHED_MODELS)
            )
        self_supervised = get_model_spec(values["model"]).self_supervised
        if self_supervised and values["labels"] is not None:
            raise ConfigError(
                f"--labels: {values['model']} trains on images alone; leave --labels out (labels given as "
                "--val-images/--val-labels only score the run)"
            )
        if (values["val_images"] is None) != (values["val_labels"] is None):
            raise ConfigError("--val-images and --val-labels must be given together")
        if values["epochs"] == AUTO:  # resolved here, so config.yaml and a resume see the number
            values["epochs"] = get_model_spec(values["model"]).epochs
        if values["warmup_epochs"] >= values["epochs"]:
            raise ConfigError(
                f"--warmup-epochs: {values['warmup_epochs']} must be fewer than --epochs {values['epochs']}"
            )

    def check_labels_given(self) -> None:
        """`--labels` is required unless the model trains on images alone (checked when a run starts,
        not in `check`, so a form can check one field while the folders are still blank)."""
        if self.labels is None and not get_model_spec(self.model).self_supervised:
            raise ConfigError(
                "--labels is required (or --model " + " or ".join(SELF_SUPERVISED_MODELS) + " to train on "
                "images alone)"
            )

    def self_supervision(self) -> SelfSupervision | None:
        """WNet3D's loss terms, or None for a model trained on labels."""
        from voxseg.losses import SelfSupervision

        if not get_model_spec(self.model).self_supervised:
            return None
        return SelfSupervision(
            self.ncut_weight,
            self.reconstruction_weight,
            self.partition_weight,
            self.ncut_radius,
            self.ncut_sigma_i,
            self.ncut_sigma_x,
        )

    def reading(self) -> Reading:
        """How this run's files are read (keys, level, label classes, voxel size)."""
        from voxseg.data.checks import Reading
        from voxseg.data.labels import LabelMap

        label_map = LabelMap.parse(self.label_map, self.ignore_label)
        return Reading(
            self.image_key,
            self.label_key,
            self.level,
            label_map,
            self.spacing,
            self.channel,
            self.timepoint,
            self.series,
        )

    @classmethod
    def for_resume(cls, run_dir: str | Path, overrides: dict[str, Any]) -> TrainConfig:
        """The run's own config.yaml with the few options a resume may change (`RESUME_OVERRIDES`).

        The one resume rule, for every face: any other option given with `--resume` is refused.
        """
        fixed = sorted(set(overrides) - set(RESUME_OVERRIDES))
        if fixed:
            flags = ", ".join(FLAGS.get(name, flag(name)) for name in fixed)
            raise ConfigError(f"--resume continues a run with its own config.yaml; {flags} cannot change")
        saved = Path(run_dir) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"--resume: {saved} does not exist; give a run folder")
        return cls.from_dict({**cls.from_yaml(saved).to_dict(), **overrides})


#: what may change when a run is resumed: everything else is the run's own config.yaml
RESUME_OVERRIDES = tuple(name for name, opt, _ in options_of(TrainConfig) if opt.resumable)
#: option name -> the flag as typed (`augment` -> `--no-augment`)
FLAGS = {name: typed_flag(name, opt, default) for name, opt, default in options_of(TrainConfig)}
OPTIONS = {name: opt for name, opt, _ in options_of(TrainConfig)}
DEFAULTS = {name: default for name, _, default in options_of(TrainConfig)}

#: `voxseg train` options that are not part of a run's configuration
COMMAND_OPTIONS = {
    "config": Option(
        "YAML file of options (same names, `-` or `_`); flags given on the command line override it",
        "",
        "",
        kind="file",
        metavar="FILE",
        in_form=False,
    ),
    "resume": Option(
        "continue a run from its last completed epoch, with its own config.yaml (only "
        + ", ".join(f"`{FLAGS[n]}`" for n in RESUME_OVERRIDES)
        + " may be given with it)",
        "",
        "",
        kind="folder",
        metavar="RUN_DIR",
        in_form=False,
    ),
}
