"""Model registry: size rules, every network's output contract, TRAILMAP layouts, output prior."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from voxseg.errors import ConfigError
from voxseg.models.registry import (
    FOREGROUND_PRIOR,
    MODEL_NAMES,
    MODELS,
    build_for_weights,
    build_model,
    get_model_spec,
    init_output_prior,
    output_channels,
    resolve_model_name,
)
from voxseg.models.trailmap import Trailmap, TrailmapMS

#: tests may read ../shared, but skip cleanly where it is absent
REFERENCE_KEYS = Path(__file__).resolve().parents[3] / "shared/reference/trailmap_ms_state_dict_keys.txt"


# -- size rules ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "side", "pow2", "expected"),
    [
        ("SegResNet", 60, False, 64),
        ("SegResNet", 64, False, 64),
        ("SegResNet", 65, False, 72),
        ("SegResNet", 3, False, 8),
        ("SegResNet", 65, True, 128),
        ("SegResNet", 33, True, 64),
        ("VNet", 60, False, 64),
        ("VNet", 17, False, 32),
        ("SwinUNETR", 33, False, 64),
        ("TRAILMAP_MS", 17, False, 17),
        ("TRAILMAP", 23, False, 23),
        ("TRAILMAP", 17, True, 32),
    ],
)
def test_valid_side(name: str, side: int, pow2: bool, expected: int) -> None:
    assert get_model_spec(name).valid_side(side, pow2) == expected


def test_divisors() -> None:
    divisors = {name: spec.divisor for name, spec in MODELS.items()}
    assert divisors == {
        "SegResNetDS": 8,
        "SegResNet": 8,
        "VNet": 16,
        "SwinUNETR": 32,
        "TRAILMAP_MS": 1,
        "TRAILMAP": 1,
        "WNet3D": 8,
    }


@pytest.mark.parametrize("name", list(MODELS))
def test_min_side_is_respected(name: str) -> None:
    """Tiny requests grow to the minimum side; every answer is divisible and never smaller than asked."""
    spec = get_model_spec(name)
    assert spec.min_side % spec.divisor == 0
    assert spec.valid_side(1) == spec.min_side
    for side in range(1, 70):
        valid = spec.valid_side(side)
        assert valid >= max(side, spec.min_side) and valid % spec.divisor == 0
        assert valid - max(side, spec.min_side) < spec.divisor  # no more padding than needed


def test_valid_size_per_axis() -> None:
    spec = get_model_spec("SegResNet")
    assert spec.valid_size((60, 64, 9)) == (64, 64, 16)
    assert spec.valid_size((60, 64, 9), pow2=True) == (64, 64, 16)
    assert spec.valid_size((5, 100, 130), pow2=True) == (8, 128, 256)
    assert "divisible by 8" in spec.rule()
    assert "any side of at least 8" in get_model_spec("TRAILMAP").rule()


# -- every model's output contract --------------------------------------------------------------------

#: (model, batch, size); None = the smallest size the registry calls valid
MODEL_SIZES = [
    pytest.param("SegResNet", 2, (16, 24, 16), id="SegResNet"),
    pytest.param("VNet", 1, (32, 32, 32), id="VNet"),
    pytest.param("TRAILMAP_MS", 2, (17, 23, 20), id="TRAILMAP_MS-odd"),
    pytest.param("TRAILMAP", 1, (17, 23, 20), id="TRAILMAP-odd"),
    pytest.param("SwinUNETR", 1, None, id="SwinUNETR"),
]


@pytest.mark.parametrize(("name", "batch", "size"), MODEL_SIZES)
def test_model_output_has_the_input_size(name: str, batch: int, size: tuple[int, int, int] | None) -> None:
    spec = get_model_spec(name)
    size = size or spec.valid_size((1, 1, 1))
    assert spec.valid_size(size) == size, "the test must use a size the model accepts"
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(batch, 1, *size))
    assert tuple(out.shape) == (batch, 1, *size)
    assert torch.isfinite(out).all()


#: TRAILMAP (which pads every input by 28 voxels) and SwinUNETR train at their smallest patch in
#: test_training.py::test_every_model_trains_one_epoch
SMALLEST_TRAINABLE = [
    pytest.param("SegResNet", id="SegResNet"),
    pytest.param("VNet", id="VNet"),
    pytest.param("TRAILMAP_MS", id="TRAILMAP_MS"),
]


@pytest.mark.parametrize("name", SMALLEST_TRAINABLE)
def test_smallest_valid_patch_trains_with_a_batch_of_one(name: str) -> None:
    """Every size the registry calls valid must train, also for the last, single-patch batch of an epoch.

    BatchNorm in training mode needs more than one value per channel: a 1x1x1 bottleneck with batch 1
    raises ValueError mid-epoch (exit code 1) although the configuration passed validation.
    """
    size = get_model_spec(name).valid_size((1, 1, 1))
    model = build_model(name).train()
    out = model(torch.randn(1, 1, *size))
    out.mean().backward()
    assert tuple(out.shape) == (1, 1, *size)


def test_trailmap_valid_convolutions_shrink_by_twice_the_margin() -> None:
    """The original network: 40^3 -> 12^3 (64^3 -> 36^3), i.e. 14 voxels lost per side."""
    model = Trailmap().eval()
    assert Trailmap.margin == 14
    with torch.no_grad():
        out = model.forward_valid(torch.randn(1, 1, 40, 40, 40))
    assert tuple(out.shape) == (1, 1, 12, 12, 12)


# -- TRAILMAP_MS layout matches the published weights -------------------------------------------------


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def test_trailmap_ms_key_names_inline() -> None:
    """Always-on excerpt of the pytorch-3dunet layout napari-cellseg3d's weights use."""
    shapes = _shapes(TrailmapMS())
    assert shapes["encoders.0.basic_module.SingleConv1.conv.weight"] == (32, 1, 3, 3, 3)
    assert shapes["encoders.0.basic_module.SingleConv2.batchnorm.running_var"] == (64,)
    assert shapes["encoders.3.basic_module.SingleConv2.conv.weight"] == (512, 256, 3, 3, 3)
    assert shapes["decoders.0.basic_module.SingleConv1.conv.weight"] == (256, 768, 3, 3, 3)
    assert shapes["decoders.2.basic_module.SingleConv2.batchnorm.num_batches_tracked"] == ()
    assert shapes["final_conv.weight"] == (1, 64, 1, 1, 1)
    assert shapes["final_conv.bias"] == (1,)
    assert len(shapes) == 86


def test_trailmap_ms_matches_the_reference_state_dict() -> None:
    if not REFERENCE_KEYS.is_file():
        pytest.skip(f"{REFERENCE_KEYS} is not available")
    reference = {}
    for line in REFERENCE_KEYS.read_text().splitlines():
        # lines are `key (shape)`; anything else (e.g. a stray warning printed into the file) is skipped
        match = re.fullmatch(r"(\S+) \(([\d, ]*)\)", line.strip())
        if match:
            reference[match[1]] = tuple(int(s) for s in match[2].split(",") if s.strip())
    assert len(reference) > 50, "the reference file no longer has the `key (shape)` format"
    assert _shapes(build_model("TRAILMAP_MS")) == reference


def test_trailmap_ms_loads_its_own_state_dict_strictly() -> None:
    source, target = TrailmapMS(), TrailmapMS()
    target.load_state_dict(source.state_dict(), strict=True)
    assert torch.equal(target.final_conv.weight, source.final_conv.weight)


# -- output prior -------------------------------------------------------------------------------------


def _last_conv(model: nn.Module) -> nn.Module:
    return [m for m in model.modules() if isinstance(m, nn.Conv3d | nn.ConvTranspose3d)][-1]


@pytest.mark.parametrize("name", [name for name, spec in MODELS.items() if not spec.self_supervised])
def test_output_prior_on_the_output_conv(name: str) -> None:
    """The bias set to logit(prior) must belong to the single-channel output layer, not some inner conv
    (WNet3D's encoder starts from the partition it is taught instead)."""
    assert 0 < FOREGROUND_PRIOR < 0.5  # cells are the minority class
    model = build_model(name)
    last = _last_conv(model)
    assert last.out_channels == 1
    assert last.bias is not None
    expected = math.log(FOREGROUND_PRIOR / (1 - FOREGROUND_PRIOR))
    assert float(last.bias.detach()[0]) == pytest.approx(expected, abs=1e-6)


def test_output_prior_shifts_the_logits() -> None:
    """A network with zero weights in its output conv then predicts the prior everywhere."""
    model = build_model("TRAILMAP_MS").eval()
    nn.init.zeros_(model.final_conv.weight)
    with torch.no_grad():
        probability = torch.sigmoid(model(torch.randn(1, 1, 8, 8, 8)))
    torch.testing.assert_close(probability, torch.full_like(probability, FOREGROUND_PRIOR))


def test_init_output_prior_custom_value() -> None:
    model = nn.Sequential(nn.Conv3d(1, 4, 3), nn.Conv3d(4, 1, 1))
    init_output_prior(model, prior=0.25)
    assert float(model[1].bias.detach()[0]) == pytest.approx(math.log(0.25 / 0.75))
    assert not torch.allclose(model[0].bias, torch.full_like(model[0].bias, math.log(1 / 3)))


# -- names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("SegResNet", "SegResNet"),
        ("segresnet", "SegResNet"),
        ("SEGRESNET", "SegResNet"),
        ("vnet", "VNet"),
        ("trailmap_ms", "TRAILMAP_MS"),
        ("Trailmap-MS", "TRAILMAP_MS"),
        ("TrailMap", "TRAILMAP"),
        ("swinunetr", "SwinUNETR"),
        ("Swin-UNETR", "SwinUNETR"),
    ],
)
def test_resolve_model_name(given: str, expected: str) -> None:
    assert resolve_model_name(given) == expected


def test_unknown_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--model") as info:
        resolve_model_name("NoSuchNet")
    assert "NoSuchNet" in str(info.value) and "SegResNet" in str(info.value)


# -- SegResNetDS: shaped by the voxel size --------------------------------------------------------


@pytest.mark.parametrize(
    ("voxel_size", "first_kernel"),
    [
        (None, (3, 3, 3)),
        ((1.0, 1.0, 1.0), (3, 3, 3)),
        ((1.75, 0.8, 0.8), (1, 3, 3)),
        ((4.0, 1.0, 1.0), (1, 3, 3)),
    ],
)
def test_segresnetds_keeps_coarse_z_at_its_resolution_and_a_weights_file_rebuilds_it(
    voxel_size, first_kernel
) -> None:
    """Z at least twice as coarse as Y/X: the first levels convolve and downsample only in Y/X
    (nnU-Net's rule); the kernel shapes alone rebuild the same network for a weights file."""
    from voxseg.models.registry import voxel_size_of_weights

    model = build_model("SegResNetDS", voxel_size)
    state = model.state_dict()
    assert tuple(state["encoder.conv_init.weight"].shape[2:]) == first_kernel
    rebuilt = build_model("SegResNetDS", voxel_size_of_weights("SegResNetDS", state))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in state.items()}
    assert voxel_size_of_weights("SegResNet", build_model("SegResNet").state_dict()) is None
    x = torch.randn(1, 1, 16, 32, 32)
    assert model.eval()(x).shape == x.shape


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "WNet3D"])
def test_a_second_output_is_read_back_from_the_weights_in_any_key_order(name: str) -> None:
    """A run trained on instance labels has two outputs (foreground, distance): its weights file alone
    rebuilds that, also from safetensors, which stores the keys sorted."""
    voxel = (2.0, 1.0, 1.0) if name == "SegResNetDS" else None
    two = build_model(name, voxel, outputs=2).state_dict()
    for state in (two, dict(sorted(two.items()))):
        assert output_channels(name, state) == 2
        rebuilt = build_for_weights(name, state)
        rebuilt.load_state_dict(state)  # strictly: the same shapes
        side = 64 if name == "SwinUNETR" else 16
        with torch.no_grad():
            assert rebuilt.eval()(torch.zeros(1, 1, side, side, side)).shape[1] == 2
    assert output_channels(name, build_model(name, voxel).state_dict()) == 1
