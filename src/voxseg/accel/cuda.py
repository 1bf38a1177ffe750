"""CUDA settings that are process-wide in PyTorch, each set for a block and restored after it:
napari hosts other plugins in the same process, and they must find the settings they had."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def cudnn_autotuning(enabled: bool = True) -> Iterator[None]:
    """cuDNN times every candidate kernel for each new shape (`enabled`), or picks by heuristics.

    Training's patch shape is fixed, so timing once pays: VNet float32 on an H200, 0.21 -> 0.18 s a
    step, for a first step of 37 s. Inference shapes are not fixed (the last sliding-window batch is
    smaller, volumes differ): there each new shape cost 9-12 s of timing against 0.1 s without.
    """
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def heuristic_kernels() -> contextlib.AbstractContextManager[None]:
    """cuDNN picks kernels by its heuristics for the block (inference: shapes change)."""
    return cudnn_autotuning(False)


@contextlib.contextmanager
def eager_fallback() -> Iterator[None]:
    """A graph `torch.compile` cannot handle runs eagerly instead of failing the run."""
    from torch import _dynamo

    previous = _dynamo.config.suppress_errors
    _dynamo.config.suppress_errors = True
    try:
        yield
    finally:
        _dynamo.config.suppress_errors = previous


def uses_channels_last(device: torch.device) -> bool:
    """Channels-last 3D layout for the model and its inputs: on CUDA (cuDNN's fast kernels want it);
    on the CPU it made a SegResNet step 2× slower."""
    return device.type == "cuda"
