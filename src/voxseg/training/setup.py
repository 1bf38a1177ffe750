"""Everything that can fail because of user input happens here, before a run folder exists."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from voxseg.config import TrainConfig
from voxseg.data.objects import holds_instance_ids
from voxseg.data.resample import isotropic_side, resample_volume
from voxseg.data.self_labels import ncut_partition
from voxseg.data.split import Split, split_volumes
from voxseg.data.volumes import Volume, load_volumes, pad_volume
from voxseg.errors import ConfigError, DataError
from voxseg.io.formats import Spacing, describe_spacing
from voxseg.losses import SelfSupervision
from voxseg.models.registry import ModelSpec, format_size, get_model_spec, voxel_size_of_weights
from voxseg.models.weights import load_trained_network
from voxseg.options import AUTO
from voxseg.runtime.distributed import Parallel
from voxseg.runtime.hardware import available_memory_bytes, resolve_device
from voxseg.runtime.precision import Precision, resolve_precision
from voxseg.training.autosize import MAX_AUTO_SIDE, choose_sizes, largest_valid_patch
from voxseg.training.budget import (
    BASE_SIDE,
    MIN_PATCHES_PER_EPOCH,
    patch_shape,
    patches_per_volume,
    shaped_patch,
)
from voxseg.training.nucleus_size import labels_radius, partition_radius
from voxseg.training.outputs import OUTPUTS, resolve_instance_output
from voxseg.training.preflight import Preflight, preflight
from voxseg.training.threshold_rule import count_objects


@dataclass
class PreparedRun:
    """A validated config with its data loaded and checked, ready for the engine."""

    config: TrainConfig
    device: torch.device
    spec: ModelSpec
    train_volumes: list[Volume]
    val_volumes: list[Volume]
    window: tuple[int, int, int]  # training patch = validation sliding window
    run_dir: Path
    initial_state: dict[str, torch.Tensor] | None = None  # from --weights / --pretrained
    precision: Precision = Precision("fp32", "default")
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    parallel: Parallel = field(default_factory=Parallel)  # this process's place among torchrun's
    files: list[tuple[str, Path]] = field(default_factory=list)  # (role, path) of every input file
    blocks_held_out: bool = False  # validation blocks cut out of the training volumes' labels
    validation: str = ""  # what validates and why, as the log says it
    val_objects: int | None = None  # objects in the validation labels (may the threshold be tuned?)
    samples: list[int] = field(default_factory=list)  # patches per epoch from each training volume
    object_radius: float | None = None  # of the training labels' objects (µm; voxels without a size)

    @property
    def voxel_size(self) -> Spacing | None:
        """The training volumes' voxel size (µm, Z×Y×X) when they share one, else None."""
        return _shared_voxel_size(self.train_volumes)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The network's outputs in channel order (`training.outputs`)."""
        return OUTPUTS.get(self.config.instance_output, OUTPUTS["none"])

    @property
    def model_voxel_size(self) -> Spacing | None:
        """The voxel size the network is shaped by (SegResNetDS): that of the starting weights when
        there are some (they fix the shape), else the training volumes'."""
        if self.initial_state is not None:
            return voxel_size_of_weights(self.config.model, self.initial_state)
        return self.voxel_size

    @property
    def self_supervision(self) -> SelfSupervision | None:
        """WNet3D's loss terms; None for a model trained on labels."""
        return self.config.self_supervision()

    @property
    def validated_against(self) -> str:
        """`labels`, or `partitions`: the ones the validation volumes gave themselves (no labels given)."""
        labelled = self.config.labels is not None or self.config.val_labels is not None
        return "labels" if labelled else "partitions"

    @property
    def partitions(self) -> bool:
        """Validation is the volumes' own partitions: it picks the checkpoint, not the threshold."""
        return self.validated_against == "partitions"

    @property
    def loss_description(self) -> str:
        """The loss as summary.json names it: the option's value, or WNet3D's terms and weights."""
        terms = self.self_supervision
        if terms is None:
            return self.config.loss
        return (
            f"WNet3D: N-cut x{terms.ncut_weight:g} + reconstruction x{terms.reconstruction_weight:g} "
            f"+ partition (Dice-CE) x{terms.partition_weight:g}"
        )

    @property
    def sparse(self) -> bool:
        """Whether some training voxels are not annotated (the loss then leaves them out): label
        values the map ignores, or validation blocks held out of the training volumes."""
        return self.config.reading().label_map.has_ignored or self.blocks_held_out


def prepare_run(
    config: TrainConfig, resume_dir: Path | None = None, parallel: Parallel | None = None
) -> PreparedRun:
    """Check the options, pair/check/load the data, split it, decide patch size and padding.

    With `resume_dir` the run continues in that folder; otherwise a new run folder is chosen (under
    torchrun, by rank 0 for all). The caller's config is not changed: `PreparedRun.config` is the
    resolved copy the run uses.
    """
    parallel = parallel or Parallel()
    checked = preflight(config, resume_dir)
    config, run_dir = checked.config, parallel.from_main(checked.run_dir)
    device = resolve_device(parallel.device_name(config.device))
    if config.sync_batchnorm and parallel.active and device.type != "cuda":
        raise ConfigError("--sync-batchnorm needs GPUs (PyTorch's SyncBatchNorm); on the CPU leave it out")
    spec = get_model_spec(config.model)
    notes: list[str] = []

    initial_state = None if resume_dir is not None else _initial_weights(config, notes)
    object_radius = labels_radius(config, checked.pairs)
    ids = config.labels is not None and holds_instance_ids(checked.pairs, config.reading())
    if resume_dir is None:  # a resumed run's config.yaml holds what it chose
        chosen, note = resolve_instance_output(config, ids, object_radius, checked.pairs, initial_state)
        config = dataclasses.replace(config, instance_output=chosen)
        notes += [note] if note else []
    split, warnings = _load_data(config, checked, notes, object_radius, ids)
    warnings = [*checked.warnings, *warnings]  # the labels' values, as preflight found them
    if config.labels is None:  # the partitions the volumes gave themselves hold the objects
        object_radius = partition_radius(split.train + split.val)
    if object_radius is not None:
        unit = "voxels" if _shared_voxel_size(split.train) is None else "µm"
        notes.append(
            f"objects: typical radius {object_radius:.3g} {unit} (predict scales its watershed by it)"
        )
    train_volumes, val_volumes = split.train, split.val

    if config.lr == AUTO:
        config = dataclasses.replace(config, lr=spec.lr)
        notes.append(f"lr {spec.lr:g} (auto: {spec.name}'s)")
    if config.loss == AUTO and spec.self_supervised:
        notes.append("loss: WNet3D's N-cut, reconstruction and partition terms (--loss is not used)")
    elif config.loss == AUTO:
        loss = "focal" if config.reading().label_map.has_ignored else "dice-ce"
        config = dataclasses.replace(config, loss=loss)
        notes.append(f"loss {loss} (auto: {'sparse' if loss == 'focal' else 'dense'} labels)")
    precision = resolve_precision(config.precision, device)
    notes.append(f"precision {precision.name} ({precision.reason})")
    if precision.warning:
        warnings.append(precision.warning)
    # measured in each rank's memory: rank 0's choice for all (every rank must take the same steps)
    config = parallel.from_main(_resolve_auto_sizes(config, spec, device, precision, train_volumes, notes))
    if config.whole_volumes:
        asked = tuple(max(v.shape[axis] for v in train_volumes) for axis in range(3))
        notes.append(f"whole volumes: largest training volume {format_size(asked)}")
    else:
        asked = config.patch_size
    samples = _samples_per_volume(config, train_volumes, notes)
    window = spec.valid_size(asked, config.pad_pow2)
    notes.append(f"padding: {spec.padding_sentence(asked, config.pad_pow2)}")
    padded = []
    for volume in train_volumes:
        grown = pad_volume(volume, window)
        if grown is not volume:
            sizes = f"{format_size(volume.shape)} padded to {format_size(grown.shape)}"
            if not config.whole_volumes:
                sizes += f" ({_fitting_patch(spec, volume.shape, window)} would need none)"
            notes.append(f"padding: {volume.name} {sizes}")
        padded.append(grown)
    return PreparedRun(
        config,
        device,
        spec,
        padded,
        val_volumes,
        window,
        run_dir,
        initial_state=initial_state,
        precision=precision,
        notes=notes,
        warnings=warnings,
        parallel=parallel,
        files=_input_files(checked, split),
        blocks_held_out=split.blocks_held_out,
        validation=split.description,
        val_objects=count_objects([volume.label for volume in val_volumes]),
        samples=samples,
        object_radius=object_radius,
    )


def _fitting_patch(spec: ModelSpec, shape: tuple[int, int, int], window: tuple[int, int, int]) -> str:
    """The patch the user could give instead: each side cut down to the volume's, by the model's rule."""
    fitting = largest_valid_patch(spec, shape)
    return "--patch-size " + ",".join(str(min(a, b)) for a, b in zip(fitting, window, strict=True))


def _input_files(checked: Preflight, split: Split) -> list[tuple[str, Path]]:
    """(role, path) of every input file, in the role the split gave it: a volume of the training
    folder held out whole validates; with blocks held out, every volume both trains and validates."""
    held_out = {volume.name for volume in split.val} if checked.val_pairs is None else set()
    if split.blocks_held_out:
        kinds = [(pair, "train + validation blocks") for pair in checked.pairs]
    else:
        kinds = [(pair, "validation" if pair.name in held_out else "train") for pair in checked.pairs]
    kinds += [(pair, "validation") for pair in checked.val_pairs or []]
    return [
        (role, path)
        for pair, kind in kinds
        for role, path in ((f"{kind} image", pair.image), (f"{kind} label", pair.label))
        if path is not None
    ]


def _load_data(
    config: TrainConfig, checked: Preflight, notes: list[str], radius: float | None, ids: bool
) -> tuple[Split, list[str]]:
    """Read and check every pair, resample if asked, split: (the split, warnings); validation volumes
    are read into memory (validation predicts them whole). With the distance output and labels that
    hold instance `ids`, the training volumes carry its target (`radius`: the typical nucleus's)."""
    reading = config.reading()
    if config.labels is None:
        notes.append(f"data: {len(checked.pairs)} image(s) from {config.images}, no labels")
    else:
        notes.append(
            f"data: {len(checked.pairs)} image/label pair(s) from {config.images} and {config.labels}"
        )
    if not reading.label_map.is_default:
        notes.append(f"labels: {reading.label_map} (ignored voxels count in neither the loss nor the Dice)")
    terms = config.self_supervision()  # None unless the images train alone (WNet3D)
    partition = ncut_partition
    if terms is not None:
        partition = functools.partial(
            ncut_partition,
            radius=terms.radius,
            sigma_i=terms.sigma_i,
            sigma_x=terms.sigma_x,
            seed=config.seed,
        )
    distance = config.instance_output == "distance" and ids
    volumes, warnings, data_notes = load_volumes(
        checked.pairs, reading, memory_budget(), partition, distance, radius
    )
    notes += data_notes
    val_volumes: list[Volume] = []
    if checked.val_pairs is not None:
        val_volumes, val_warnings, val_notes = load_volumes(checked.val_pairs, reading)
        warnings += val_warnings
        notes += [f"validation {note}" for note in val_notes if note.startswith("voxel size")]
    if config.resample == "isotropic":
        side = isotropic_side(volumes + val_volumes)
        volumes = [resample_volume(v, side) for v in volumes]
        val_volumes = [resample_volume(v, side) for v in val_volumes]
        shapes = ", ".join(f"{v.name} {format_size(v.shape)}" for v in (volumes + val_volumes)[:4])
        notes.append(f"resampled to isotropic {side:.4g} µm voxels: {shapes}")
    if checked.val_pairs is not None:
        how = (
            f"{len(val_volumes)} volume(s) from {config.val_images}; "
            f"all {len(volumes)} training volume(s) used for training"
        )
        if (config.val_images, config.val_labels) == (config.images, config.labels):
            how += " (the training labels themselves: its Dice is optimistic)"
        split = Split(volumes, val_volumes, how)
    else:
        split = split_volumes(volumes, config.train_fraction, config.seed)
    notes.append(f"validation: {split.description}")
    _refuse_all_empty(config, split.train, split.val)
    split = dataclasses.replace(split, val=[volume.in_memory() for volume in split.val])
    return split, warnings


def _refuse_all_empty(config: TrainConfig, train: list[Volume], val: list[Volume]) -> None:
    """Labels without any foreground teach nothing (a single empty volume among others is a warning)."""
    for volumes, part, folder in (
        (train, "training", config.labels),
        (val, "validation", config.val_labels or config.labels),
    ):
        if not any(volume.has_foreground() for volume in volumes):
            names = ", ".join(volume.name for volume in volumes)
            hint = "" if part == "training" or config.val_images else "; give --val-images/--val-labels"
            raise DataError(
                f"{folder}: no {part} volume has a foreground voxel ({names}); labels must mark the "
                f"cells with values > 0{hint}"
            )


def memory_budget() -> int | None:
    """Bytes of training volumes held in memory (half the available memory); the others are read
    patch by patch from disk. None (hold everything) where the available memory is unknown."""
    available = available_memory_bytes()
    return None if available is None else available // 2


def _resolve_auto_sizes(
    config: TrainConfig,
    spec: ModelSpec,
    device: torch.device,
    precision: Precision,
    volumes: list[Volume],
    notes: list[str],
) -> TrainConfig:
    """The config with `auto` patch and batch sizes replaced by chosen ones (config.yaml keeps them).

    The automatic patch is shaped by the voxel size (`budget`); on a GPU it grows to the largest
    whose measured step memory fits, on the CPU it stays at `BASE_SIDE` voxels along the finest
    axis, where time, not memory, is what limits a run."""
    if AUTO not in (config.patch_size, config.batch_size):
        return config
    smallest = tuple(min(v.shape[axis] for v in volumes) for axis in range(3))
    voxel_size = _shared_voxel_size(volumes)
    shape = patch_shape(voxel_size)
    if config.patch_size == AUTO and config.batch_size != AUTO and device.type != "cuda":
        patch = shaped_patch(spec, BASE_SIDE, shape, largest_valid_patch(spec, smallest), config.pad_pow2)
        notes.append(
            f"--patch-size auto: {format_size(patch)}, {BASE_SIDE} voxels along the finest axis and fewer "
            f"along coarser ones ({describe_spacing(voxel_size)}), at most the smallest training volume"
        )
        return dataclasses.replace(config, patch_size=patch)
    if config.whole_volumes:  # the patch is the (padded) largest volume; only the batch can be chosen
        largest = tuple(max(v.shape[axis] for v in volumes) for axis in range(3))
        patch = spec.valid_size(largest, config.pad_pow2)
        patches_per_epoch = len(volumes)
    else:  # memory is measured for the window the model really trains on (after padding)
        patch = config.patch_size
        if patch != AUTO:
            patch = spec.valid_size(patch, config.pad_pow2)
        patches_per_epoch = len(volumes) * MIN_PATCHES_PER_EPOCH
        if config.samples_per_image != AUTO:
            patches_per_epoch = len(volumes) * int(config.samples_per_image)
    max_side = MAX_AUTO_SIDE if device.type == "cuda" else BASE_SIDE
    chosen_patch, chosen_batch, lines = choose_sizes(
        spec, device, precision, smallest, patch, config.batch_size, patches_per_epoch, shape, max_side,
        config.pad_pow2,
    )  # fmt: skip
    notes.extend(lines)
    patch_size = config.patch_size if config.whole_volumes else chosen_patch
    return dataclasses.replace(config, patch_size=patch_size, batch_size=chosen_batch)


def _shared_voxel_size(volumes: list[Volume]) -> Spacing | None:
    """The volumes' voxel size when they share one, else None."""
    sizes = {volume.voxel_size for volume in volumes}
    return sizes.pop() if len(sizes) == 1 else None


def _samples_per_volume(config: TrainConfig, volumes: list[Volume], notes: list[str]) -> list[int]:
    """Patches each training volume gives an epoch."""
    if config.whole_volumes:
        return [1] * len(volumes)
    if config.samples_per_image != AUTO:
        return [int(config.samples_per_image)] * len(volumes)
    counts, why = patches_per_volume([math.prod(v.shape) for v in volumes], config.patch_size)
    notes.append(why)
    return counts


def _initial_weights(config: TrainConfig, notes: list[str]) -> dict[str, torch.Tensor] | None:
    """Read and check the starting weights now, so a bad file is refused before any run folder exists."""
    if config.pretrained:
        from voxseg.models.download import fetch_weights

        path, option, origin = (
            fetch_weights(config.model),
            "--pretrained",
            "published napari-cellseg3d weights",
        )
    elif config.weights is not None:
        path, option, origin = config.weights, "--weights", "custom weights"
    else:
        return None
    model, described = load_trained_network(config.model, path, option)
    notes.append(f"weights: {origin}, {described}")
    return model.state_dict()
