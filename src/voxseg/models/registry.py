"""Model registry: name -> builder and size rule.

Each model declares the smallest side it accepts and the number every side must be divisible by;
`valid_size` turns any requested size into the smallest size the model accepts, so data are padded
only as much as needed (the origin padded to powers of two, kept as `pow2=True`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voxseg.errors import ConfigError

if TYPE_CHECKING:  # torch is imported when a network is built, not when a name is checked
    import torch
    from torch import nn

#: a voxel's size (µm, Z×Y×X); SegResNetDS shapes its kernels and strides by it
VoxelSize = tuple[float, float, float]
#: a supervised network's output channels, in order: the foreground, then (trained on instance
#: labels) each nucleus's normalised distance to its boundary (voxseg.data.distance)
OUTPUT_NAMES = ("foreground", "distance")


@dataclass(frozen=True)
class ModelSpec:
    """A network and its input rule: sides divisible by `divisor`, at least `min_side`.

    `min_side` keeps the deepest feature map larger than 1×1×1, which batch and instance
    normalisation cannot train on (VNet 32, TRAILMAP_MS 16, SwinUNETR 64).
    """

    name: str
    build: Callable[..., nn.Module]  # (voxel size, outputs), WNet3D's (voxel size, classes)
    divisor: int
    min_side: int
    description: str
    #: napari-cellseg3d's archive of pre-trained weights for it (`--pretrained`), if it publishes one
    weights_archive: str | None = None
    #: the Adam learning rate `--lr auto` gives it
    lr: float = 1e-3
    #: the epochs `--epochs auto` gives it
    epochs: int = 16
    #: trained on images alone (`--labels` is not given; see voxseg.models.wnet)
    self_supervised: bool = False

    def valid_side(self, side: int, pow2: bool = False) -> int:
        """Smallest side >= `side` this model accepts (a power of two as well when `pow2`)."""
        side = max(side, self.min_side)
        if pow2:
            side = 1 << (side - 1).bit_length()
        return -(-side // self.divisor) * self.divisor

    def valid_size(self, size: tuple[int, ...], pow2: bool = False) -> tuple[int, ...]:
        return tuple(self.valid_side(s, pow2) for s in size)

    def rule(self) -> str:
        """The size rule in words, for logs and error messages."""
        if self.divisor > 1:
            return f"sides divisible by {self.divisor}, at least {self.min_side}"
        return f"any side of at least {self.min_side}"

    def padding_sentence(self, size: tuple[int, ...], pow2: bool = False) -> str:
        """What this model does to `size`, in the one wording the log and the napari form share."""
        valid = self.valid_size(size, pow2)
        rule = f"{self.name} needs {self.rule()}" + (", power of two (--pad-pow2)" if pow2 else "")
        if valid == tuple(size):
            return f"{format_size(size)} needs no padding ({rule})"
        return f"{format_size(size)} padded to {format_size(valid)} ({rule})"


def format_size(size: tuple[int, ...]) -> str:
    """(32, 64, 64) -> `32×64×64`."""
    return "×".join(str(side) for side in size)


def _segresnet(_: VoxelSize | None = None, outputs: int = 1) -> nn.Module:
    from monai.networks.nets import SegResNet

    # The encoder/decoder of napari-cellseg3d's SegResNetVAE, without the VAE branch.
    return SegResNet(spatial_dims=3, in_channels=1, out_channels=outputs, init_filters=8)


def _segresnet_ds(voxel_size: VoxelSize | None = None, outputs: int = 1) -> nn.Module:
    """MONAI's SegResNetDS (Auto3DSeg's network), 8 filters wide, with nnU-Net's rule for anisotropic
    voxels: while an axis is at least twice as coarse as the finest, the levels keep its resolution (a
    1×3×3 kernel and a 1×2×2 stride for coarse Z), so features span about as many µm in Z as in Y/X.

    Why it is the default: a SegResNet with cubic kernels and strides sees a nucleus of confocal
    slices 2× thicker than the pixels as a flat disc. benchmarks/accuracy.py, QCANet (1.75×0.8×0.8 µm
    voxels), trained on one embryo and scored on the other, seeds 0-1: mean held-out Dice 0.873-0.875
    against 0.864 for SegResNet at the same learning rate (0.882 at its own, 3e-3), every instance
    F1 1.0, in the same training time.
    """
    from monai.networks.nets import SegResNetDS

    return SegResNetDS(
        spatial_dims=3,
        init_filters=8,
        in_channels=1,
        out_channels=outputs,
        norm=("group", {"num_groups": 8}),  # as SegResNet: no running statistics to settle
        resolution=voxel_size,
    )


def _vnet(_: VoxelSize | None = None, outputs: int = 1) -> nn.Module:
    from monai.networks.nets import VNet

    # bias=True matches the published napari-cellseg3d weights.
    return VNet(spatial_dims=3, in_channels=1, out_channels=outputs, bias=True)


def _swinunetr(_: VoxelSize | None = None, outputs: int = 1) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=1, out_channels=outputs, feature_size=48, spatial_dims=3)


def _wnet(voxel_size: VoxelSize | None = None, classes: int | None = None) -> nn.Module:
    from voxseg.models.wnet import DEFAULT_CLASSES, WNet3D

    return WNet3D(classes or DEFAULT_CLASSES, voxel_size)


def _trailmap_ms(_: VoxelSize | None = None, outputs: int = 1) -> nn.Module:
    from voxseg.models.trailmap import TrailmapMS

    return TrailmapMS(out_channels=outputs)


def _trailmap(_: VoxelSize | None = None, outputs: int = 1) -> nn.Module:
    from voxseg.models.trailmap import Trailmap

    return Trailmap(out_channels=outputs)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "SegResNetDS",
            _segresnet_ds,
            8,
            8,
            "MONAI SegResNetDS (Auto3DSeg): SegResNet with kernels and strides shaped by the voxel size",
            # QCANet (benchmarks/accuracy.py), seeds 0-1: mean held-out Dice 0.882 against 0.877 at 1e-3
            lr=3e-3,
        ),
        ModelSpec(
            "SegResNet",
            _segresnet,
            8,
            8,
            "MONAI SegResNet (Myronenko 2018)",
            weights_archive="SegResNet_latest.tar.gz",
        ),
        ModelSpec(
            "VNet", _vnet, 16, 32, "MONAI VNet (Milletari et al. 2016)", weights_archive="VNet_latest.tar.gz"
        ),
        ModelSpec(
            "TRAILMAP_MS",
            _trailmap_ms,
            1,
            16,
            "3D U-Net pre-trained by napari-cellseg3d on mesoSPIM",
            weights_archive="TRAILMAP_latest.tar.gz",
        ),
        ModelSpec("TRAILMAP", _trailmap, 1, 8, "original TRAILMAP (Friedmann et al. 2020) in PyTorch"),
        ModelSpec(
            "SwinUNETR",
            _swinunetr,
            32,
            64,
            "MONAI SwinUNETR (Hatamizadeh et al. 2022)",
            weights_archive="SwinUNetR_latest.tar.gz",
        ),
        ModelSpec(
            "WNet3D",
            _wnet,
            8,
            8,
            "self-supervised WNet3D (Xia & Kulis 2017; napari-cellseg3d 2024): trains on images alone",
            lr=3e-3,
            # measured (docs/self_supervised.md): 8 epochs reach 16's Dice in half the time
            epochs=8,
            self_supervised=True,
        ),
    )
}

MODEL_NAMES = tuple(MODELS)
#: the models trained on images alone
SELF_SUPERVISED_MODELS = tuple(name for name, spec in MODELS.items() if spec.self_supervised)


def _models_by(setting: str) -> dict[Any, list[str]]:
    """A ModelSpec setting's values -> the models that have each (for the options' help)."""
    grouped: dict[Any, list[str]] = {}
    for spec in MODELS.values():
        grouped.setdefault(getattr(spec, setting), []).append(spec.name)
    return grouped


#: learning rate -> the models `--lr auto` gives it
MODEL_LEARNING_RATES = _models_by("lr")
#: epochs -> the models `--epochs auto` gives them
MODEL_EPOCHS = _models_by("epochs")
#: the models napari-cellseg3d published pre-trained weights for (`--pretrained`)
PUBLISHED_MODELS = tuple(name for name, spec in MODELS.items() if spec.weights_archive)
_ALIASES = {name.lower().replace("_", "").replace("-", ""): name for name in MODELS}
_ALIASES["swinunetr"] = "SwinUNETR"


def resolve_model_name(name: str) -> str:
    """Canonical model name; case, '-' and '_' do not matter (`segresnet`, `trailmap-ms`)."""
    key = str(name).lower().replace("_", "").replace("-", "")
    if key not in _ALIASES:
        raise ConfigError(f"--model: unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return _ALIASES[key]


def get_model_spec(name: str) -> ModelSpec:
    return MODELS[resolve_model_name(name)]


#: foreground probability the output layer starts at (cells are a minority of voxels)
FOREGROUND_PRIOR = 0.25


def init_output_prior(model: nn.Module, prior: float = FOREGROUND_PRIOR) -> None:
    """Start the output logits at `logit(prior)` instead of 0 (probability 0.5 everywhere).

    The prior-probability initialisation of Lin et al. (2017, RetinaNet): with few foreground
    voxels, a network that starts at 0.5 spends its first epochs only learning "mostly background";
    starting below the 0.5 threshold lets the first steps learn the cells. Measured on 4 synthetic
    64^3 volumes, SegResNet, 24 Adam steps, seeds 0-3: best Dice 0.80/0.54/0.53 from 0.5 (plain
    init), 0.43/0.90/0.76/0.77 from 0.1, 0.88/0.88/0.92/- from 0.25.
    """
    from torch import nn

    last = [m for m in model.modules() if isinstance(m, nn.Conv3d | nn.ConvTranspose3d)][-1]
    if last.bias is not None:
        nn.init.constant_(last.bias, math.log(prior / (1 - prior)))


def build_model(
    name: str, voxel_size: VoxelSize | None = None, classes: int | None = None, outputs: int = 1
) -> nn.Module:
    """A freshly initialised network: 1 input channel, `outputs` channels of logits (the foreground,
    then the distance to each nucleus's boundary: `data.distance`). `voxel_size` shapes the networks
    that follow it (SegResNetDS, WNet3D); `classes` is WNet3D's K."""
    spec = get_model_spec(name)
    if spec.self_supervised:  # its encoder starts from the partition it is taught, not from a prior
        return spec.build(voxel_size, classes)
    model = spec.build(voxel_size, outputs)
    init_output_prior(model)
    return model


def output_channels(name: str, state: dict[str, torch.Tensor]) -> int:
    """How many outputs a `name` network's weights give (1 for WNet3D, whose classes are not outputs):
    the output channels of its last convolution, found in a one-output network of its shape (a weights
    file's keys may come in any order: safetensors sorts them). Every registered network ends with a
    Conv3d, whose weight is (out, in, k, k, k)."""
    from torch import nn

    spec = get_model_spec(name)
    if spec.self_supervised:
        return 1
    probe = spec.build(voxel_size_of_weights(name, state))
    last = [key for key, module in probe.named_modules() if isinstance(module, nn.Conv3d)][-1]
    weight = state.get(f"{last}.weight")
    return 1 if weight is None else int(weight.shape[0])


def voxel_size_of_weights(name: str, state: dict[str, torch.Tensor]) -> VoxelSize | None:
    """A voxel size that rebuilds the network `state` was trained as, read from its kernel shapes, so a
    weights file alone is enough to predict with it. Only SegResNetDS's shape depends on one: an axis
    whose first `n` downsampling kernels are 1 wide was `2**n` times coarser than the finest."""
    if resolve_model_name(name) not in ("SegResNetDS", "WNet3D"):
        return None
    if resolve_model_name(name) == "WNet3D":
        state = {key.removeprefix("encoder."): value for key, value in state.items()}
    kept = [0, 0, 0]  # leading levels that kept each axis's resolution
    level = 0
    while (kernel := state.get(f"encoder.layers.{level}.downsample.weight")) is not None:
        for axis, side in enumerate(kernel.shape[2:]):
            if side == 1 and kept[axis] == level:
                kept[axis] += 1
        level += 1
    return None if not any(kept) else (2.0 ** kept[0], 2.0 ** kept[1], 2.0 ** kept[2])


def build_for_weights(name: str, state: dict[str, torch.Tensor]) -> nn.Module:
    """A `name` network in the shape `state` was trained as: its voxel size (SegResNetDS, WNet3D), its
    outputs and its number of classes (WNet3D) read from the tensors' shapes, so a weights file alone
    rebuilds it."""
    classes, outputs = None, 1
    if get_model_spec(name).self_supervised:
        from voxseg.models.wnet import classes_of_weights

        classes = classes_of_weights(state)
    else:
        outputs = output_channels(name, state)
    return build_model(name, voxel_size_of_weights(name, state), classes, outputs)
