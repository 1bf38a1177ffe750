"""Sliding-window inference (MONAI, Gaussian blending) on volumes padded as the model requires."""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from voxseg.accel.cuda import heuristic_kernels
from voxseg.data.volumes import pad_amounts

#: overlap between neighbouring windows; with Gaussian weights, 0.25 hides seams at modest cost
OVERLAP = 0.25


@torch.no_grad()
def predict_probability(
    model: nn.Module,
    image: np.ndarray,
    window: tuple[int, int, int],
    device: torch.device,
    batch_size: int = 1,
) -> torch.Tensor:
    """Foreground probability (Z, Y, X) on the CPU for a normalised volume of any size.

    The windows' probabilities are blended (Gaussian), as `voxseg predict` blends them, so the
    validation Dice and the threshold tuned on it are what prediction gets. A volume smaller than
    the window is padded with its minimum (as training patches are), so every window the model
    sees has a size it accepts; the padding is cropped away afterwards.
    """
    amounts = pad_amounts(image.shape, window)
    padded = np.pad(image, amounts, mode="constant", constant_values=float(image.min()))
    tensor = torch.from_numpy(np.ascontiguousarray(padded))[None, None].to(device)
    with heuristic_kernels():
        probability = sliding_window_inference(
            tensor,
            roi_size=window,
            sw_batch_size=batch_size,
            predictor=lambda windows: torch.sigmoid(model(windows).float()),
            overlap=OVERLAP,
            mode="gaussian",
        )
    crop = tuple(slice(before, before + side) for (before, _), side in zip(amounts, image.shape, strict=True))
    return torch.as_tensor(probability)[0, 0][crop].float().cpu()
