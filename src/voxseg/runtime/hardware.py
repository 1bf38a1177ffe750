"""What the machine offers a run: the device, CPU cores (this process's affinity), available memory."""

from __future__ import annotations

import os

import torch

from voxseg.errors import ConfigError


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def available_memory_bytes() -> int | None:
    """Memory that new allocations can take without swapping (Linux's MemAvailable; psutil's estimate
    elsewhere); None where psutil cannot tell."""
    import psutil

    try:
        return int(psutil.virtual_memory().available)
    except (OSError, RuntimeError, AttributeError):
        return None


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then the CPU; an unavailable explicit choice is an error."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device: {name} requested but this PyTorch sees no CUDA GPU")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device: {name} requested but only {torch.cuda.device_count()} GPU(s) exist")
    if name == "mps" and not mps_ok:
        raise ConfigError("--device: mps requested but Apple MPS is not available")
    return torch.device(name)
