"""The two TRAILMAP networks, neither of which MONAI provides.

`TrailmapMS` reproduces the module names of pytorch-3dunet's `UNet3D`, so the state dict that
napari-cellseg3d published (see shared/reference/trailmap_ms_state_dict_keys.txt) loads as-is.
`Trailmap` is the original Keras network of Friedmann et al. (2020): its decoder uses 'valid'
convolutions, so a 64^3 input gives a 36^3 output. To keep one contract for every model (output
the size of the input), it pads its input with 14 replicated voxels per side and crops the result.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


def _single_conv(in_channels: int, out_channels: int, padding: int) -> nn.Sequential:
    """Conv3d(k=3, no bias) -> ReLU -> BatchNorm3d, named as pytorch-3dunet names them."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=padding, bias=False),
            ReLU=nn.ReLU(inplace=True),
            batchnorm=nn.BatchNorm3d(out_channels),
        )
    )


def _double_conv(in_channels: int, mid_channels: int, out_channels: int, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            SingleConv1=_single_conv(in_channels, mid_channels, padding),
            SingleConv2=_single_conv(mid_channels, out_channels, padding),
        )
    )


class _Encoder(nn.Module):
    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, pool: bool) -> None:
        super().__init__()
        self.pooling = nn.MaxPool3d(2) if pool else None
        self.basic_module = _double_conv(in_channels, mid_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling is not None:
            x = self.pooling(x)
        return self.basic_module(x)


class _NearestDecoder(nn.Module):
    """Upsample (nearest) to the skip's size, concatenate [skip, x], two convolutions."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.basic_module = _double_conv(in_channels, out_channels, out_channels)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
        return self.basic_module(torch.cat([skip, x], dim=1))


class TrailmapMS(nn.Module):
    """napari-cellseg3d's TRAILMAP_MS: a 4-level 3D U-Net (pytorch-3dunet `UNet3D` layout)."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(
            [
                _Encoder(in_channels, 32, 64, pool=False),
                _Encoder(64, 64, 128, pool=True),
                _Encoder(128, 128, 256, pool=True),
                _Encoder(256, 256, 512, pool=True),
            ]
        )
        self.decoders = nn.ModuleList(
            [_NearestDecoder(256 + 512, 256), _NearestDecoder(128 + 256, 128), _NearestDecoder(64 + 128, 64)]
        )
        self.final_conv = nn.Conv3d(64, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            x = decoder(skip, x)
        return self.final_conv(x)


def _center_crop(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    starts = [(have - want) // 2 for have, want in zip(x.shape[2:], size, strict=True)]
    return x[(..., *(slice(s, s + w) for s, w in zip(starts, size, strict=True)))]


class _ValidDecoder(nn.Module):
    """ConvTranspose 2^3 stride 2 (ReLU), concat with the center-cropped skip, two 'valid' convs."""

    def __init__(self, channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.ConvTranspose3d(channels, channels, kernel_size=2, stride=2), nn.ReLU())
        self.convs = nn.Sequential(
            nn.Conv3d(channels + skip_channels, out_channels, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm3d(out_channels),
            nn.Conv3d(out_channels, out_channels, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.BatchNorm3d(out_channels),
        )

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        return self.convs(torch.cat([x, _center_crop(skip, x.shape[2:])], dim=1))


def _same_block(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, mid_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.BatchNorm3d(mid_channels),
        nn.Conv3d(mid_channels, out_channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.BatchNorm3d(out_channels),
    )


class Trailmap(nn.Module):
    """The original TRAILMAP network; returns logits the size of its input (sigmoid at inference)."""

    #: voxels of context the 'valid' decoder consumes on each side (64 in -> 36 out).
    margin = 14

    def __init__(self, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(
            [
                _same_block(in_channels, 32, 64),
                _same_block(64, 64, 128),
                _same_block(128, 128, 256),
                _same_block(256, 256, 512),
            ]
        )
        self.decoders = nn.ModuleList(
            [_ValidDecoder(512, 256, 256), _ValidDecoder(256, 128, 128), _ValidDecoder(128, 64, 64)]
        )
        self.final_conv = nn.Conv3d(64, out_channels, kernel_size=1)

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """The network as published: sides divisible by 8, output smaller by 2 * margin."""
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(F.max_pool3d(x, 2) if level else x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            x = decoder(skip, x)
        return self.final_conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        # Pad so that (side + 2 * margin) is a multiple of 8; the extra goes to the far side.
        pads: list[int] = []
        for side in reversed(size):
            extra = -(side + 2 * self.margin) % 8
            pads += [self.margin, self.margin + extra]
        out = self.forward_valid(F.pad(x, pads, mode="replicate"))
        return out[(..., *(slice(0, s) for s in size))]
