"""WNet3D (Xia & Kulis 2017; napari-cellseg3d, eLife 2024): an encoder U-Net giving K class
probabilities and a decoder U-Net reconstructing the image from them, trained on images alone.

Both U-Nets are MONAI's SegResNetDS, shaped by the voxel size like the supervised default, 8 filters
wide (2.5 M parameters together): napari-cellseg3d's two 4-level U-Nets of 64-512 channels (50.5 M
parameters, about 1.2 TFLOP per 64^3 forward pass) are out of reach of 2 CPU cores. While training,
the network returns the K class logits and the reconstruction stacked as K + 1 channels (the loss
needs both); in eval mode it returns one channel, the foreground class's logit, log p / (1 - p), so
that validation, prediction, test-time augmentation and every export treat it as any other model.
"""

from __future__ import annotations

import torch
from torch import nn

#: what a run uses unless told: two classes, nucleus and the rest
DEFAULT_CLASSES = 2
#: weight of each training batch in the classes' running mean intensities (BatchNorm's default momentum)
BRIGHTNESS_MOMENTUM = 0.1


def _unet(in_channels: int, out_channels: int, voxel_size: tuple[float, float, float] | None) -> nn.Module:
    from monai.networks.nets import SegResNetDS

    return SegResNetDS(
        spatial_dims=3,
        init_filters=8,
        in_channels=in_channels,
        out_channels=out_channels,
        norm=("group", {"num_groups": 8}),
        resolution=voxel_size,
    )


class WNet3D(nn.Module):
    """Encoder (image -> K class logits) and decoder (K class probabilities -> image)."""

    def __init__(
        self,
        classes: int = DEFAULT_CLASSES,
        voxel_size: tuple[float, float, float] | None = None,
        foreground: int | None = None,
    ) -> None:
        super().__init__()
        if classes < 2:
            raise ValueError(f"WNet3D needs at least 2 classes, got {classes}")
        self.classes = classes
        self.encoder = _unet(1, classes, voxel_size)
        self.decoder = _unet(classes, 1, voxel_size)
        # in the state dict, so a weights file alone says which class is the nucleus
        self.register_buffer("foreground", torch.tensor(classes - 1 if foreground is None else foreground))
        # each class's mean image intensity, a running average over the training batches (as BatchNorm
        # keeps its statistics): the brightest class is the nucleus
        self.register_buffer("class_brightness", torch.zeros(classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.encoder(image)
        if not self.training:
            return foreground_logit(logits, self.foreground)
        probabilities = torch.softmax(logits, 1)
        with torch.no_grad():
            self._track_brightness(probabilities, image)
        return torch.cat([logits, self.decoder(probabilities)], 1)

    def _track_brightness(self, probabilities: torch.Tensor, image: torch.Tensor) -> None:
        """Update each class's mean intensity and make the brightest one the foreground. With the
        partition term that is the class it teaches (K - 1, the bright side of its cut); with the
        N-cut alone, which class takes the nuclei is chance, and this finds it."""
        weights = probabilities.float().sum((0, 2, 3, 4)).clamp(min=1e-6)
        means = (probabilities.float() * image.float()).sum((0, 2, 3, 4)) / weights
        self.class_brightness.lerp_(means, BRIGHTNESS_MOMENTUM)
        self.foreground.copy_(self.class_brightness.argmax())


def foreground_logit(logits: torch.Tensor, foreground: torch.Tensor) -> torch.Tensor:
    """log p_f - log(1 - p_f) of the softmax over `logits` (B, K, ...), as (B, 1, ...)."""
    chosen = torch.arange(logits.shape[1], device=logits.device).view(1, -1, 1, 1, 1) == foreground
    own = (logits * chosen).sum(1, keepdim=True)
    others = torch.logsumexp(logits.masked_fill(chosen, float("-inf")), 1, keepdim=True)
    return own - others


def classes_of_weights(state: dict[str, torch.Tensor]) -> int:
    """K, read from the encoder's output layer in a WNet3D state dict."""
    heads = [key for key in state if key.startswith("encoder.") and key.endswith(".weight")]
    return int(state[heads[-1]].shape[0]) if heads else DEFAULT_CLASSES
