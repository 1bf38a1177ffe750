"""Load weights from a file into a voxseg model: never run code from the file, never fall back silently.

Accepted: plain state dicts saved with `torch.save` (.pth/.pt), `.safetensors`, voxseg's own
checkpoints (a dict with a "model" state dict), and napari-cellseg3d's files (SegResNetVAE's VAE
branch is dropped; DataParallel's "module." prefix is stripped). Pickles are read with
`weights_only=True`, so a file that would build arbitrary objects is refused before it runs.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
from torch import nn

from voxseg.errors import DataError, shorten_list

_LISTED = 5


def read_state_dict(path: Path, option: str = "--weights") -> dict[str, torch.Tensor]:
    """The tensors of a weights file, as a flat name -> tensor mapping (on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{option}: {path} does not exist")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(f"{option}: {path} is not a readable .safetensors file ({exc})") from None
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the user gets one line
            warnings.simplefilter("ignore")
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's safe unpickler cannot tell garbage from a pickle carrying objects or code
        raise DataError(
            f"{option}: {path} is not a plain weights file and was refused without running it "
            "(only tensors are read from .pth files; it may be corrupt, or hold objects or code)"
        ) from None
    except Exception as exc:  # truncated files, zip errors, foreign formats
        raise DataError(
            f"{option}: cannot read {path} as PyTorch weights ({type(exc).__name__}: {exc})"
        ) from None
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    if not isinstance(loaded, dict) or not loaded or not all(torch.is_tensor(v) for v in loaded.values()):
        raise DataError(f"{option}: {path} is not a state dict (a mapping of parameter names to tensors)")
    return loaded


def adapt_state_dict(model_name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Translate known foreign layouts to voxseg's module names."""
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    if model_name == "SegResNet":  # napari-cellseg3d trained SegResNetVAE; the VAE branch is not used
        state = {k: v for k, v in state.items() if not k.startswith("vae_")}
    if model_name == "WNet3D" and "foreground" in state and "class_brightness" not in state:
        from voxseg.models.wnet import classes_of_weights

        # saved before WNet3D kept its classes' running intensities: they serve training only
        state = {**state, "class_brightness": torch.zeros(classes_of_weights(state))}
    return state


def check_compatible(
    model: nn.Module, state: dict[str, torch.Tensor], model_name: str, path: Path, option: str = "--weights"
) -> None:
    """Raise DataError naming missing/unexpected keys and shape mismatches, instead of a partial load."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {shorten_list(missing, _LISTED)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {shorten_list(unexpected, _LISTED)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {shorten_list(shapes, _LISTED)}")
    if problems:
        fits = models_fitting(state)
        if fits:
            which, fix = " or ".join(fits), f"give --model {fits[0]}"
            raise DataError(f"{option}: {path} holds {which} weights, not {model_name}'s: {fix}")
        raise DataError(f"{option}: {path} does not fit {model_name}: " + "; ".join(problems))


def models_fitting(state: dict[str, torch.Tensor]) -> list[str]:
    """The registered networks whose every parameter name and shape `state` matches: what a weights
    file is, when its model was not said or was said wrong (building each takes about 0.1 s)."""
    from voxseg.models.registry import MODEL_NAMES, build_for_weights

    fitting = []
    for name in MODEL_NAMES:
        adapted = adapt_state_dict(name, state)
        try:
            expected = build_for_weights(name, adapted).state_dict()
        except Exception:  # a state that makes no sense for this model's shape rules
            continue
        if expected.keys() == adapted.keys() and all(
            expected[key].shape == adapted[key].shape for key in expected
        ):
            fitting.append(name)
    return fitting


def load_trained_network(model_name: str, path: Path, option: str = "--weights") -> tuple[nn.Module, str]:
    """A `model_name` network built in the shape `path`'s weights were trained as (see
    `voxel_size_of_weights`), with them loaded strictly; and a description for the log."""
    from voxseg.models.registry import build_for_weights

    state = adapt_state_dict(model_name, read_state_dict(path, option))
    model = build_for_weights(model_name, state)
    check_compatible(model, state, model_name, path, option)
    model.load_state_dict(state, strict=True)
    return model, f"{len(state)} tensors from {path}"
