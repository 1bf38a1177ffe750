"""`--patch-size auto` / `--batch-size auto`: the largest patch and batch that fit the device's memory.

Memory is measured, not guessed: one training step of the chosen model runs at two small patch
sizes, and the memory it took — the CUDA allocator's peak on a GPU; on the CPU, the tensors autograd
keeps for the backward pass plus weights, gradients and Adam's moments — gives a cost per voxel,
which is linear in patch voxels × batch. The choice is the largest cube (clipped to the smallest
training volume) and then the largest batch whose predicted cost fits the budget.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from voxseg.losses import build_loss
from voxseg.models.registry import ModelSpec, build_model
from voxseg.options import AUTO
from voxseg.runtime.hardware import available_memory_bytes
from voxseg.runtime.precision import Precision, autocast
from voxseg.training.budget import shaped_patch

log = logging.getLogger("voxseg")

#: batch used to choose the patch when both are automatic (nnU-Net's choice: 2, then grow the patch)
PATCH_CHOICE_BATCH = 2
MAX_AUTO_BATCH = 16
MAX_AUTO_SIDE = 256
#: share of free memory a run may plan to use (the rest: fragmentation, validation, the data)
GPU_BUDGET_SHARE = 0.8
CPU_BUDGET_SHARE = 0.25
CPU_BUDGET_CAP = 8 * 2**30
GIB = 2**30


@dataclass(frozen=True)
class StepMemory:
    """bytes(patch, batch) = fixed + per_voxel × patch voxels × batch."""

    fixed: float
    per_voxel: float

    def bytes(self, patch: tuple[int, int, int], batch: int) -> float:
        return self.fixed + self.per_voxel * math.prod(patch) * batch


def memory_budget(device: torch.device) -> tuple[int, str]:
    """Bytes a run may plan for on `device`, and where the figure comes from (for the log)."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return int(free * GPU_BUDGET_SHARE), f"{GPU_BUDGET_SHARE:.0%} of the GPU's {free / GIB:.1f} GiB free"
    available = available_memory_bytes()
    if available is None:
        return 2 * GIB, "2 GiB (free memory unknown on this system)"
    budget = min(int(available * CPU_BUDGET_SHARE), CPU_BUDGET_CAP)
    return budget, f"{CPU_BUDGET_SHARE:.0%} of {available / GIB:.1f} GiB available RAM, at most 8 GiB"


def _step_bytes(
    model_name: str, device: torch.device, precision: Precision, patch: tuple[int, int, int]
) -> int:
    """Memory of one training step (batch 1) at `patch`, measured on `device`."""
    model = build_model(model_name).to(device)
    loss_fn = build_loss("dice")
    image = torch.randn(1, 1, *patch, device=device)
    label = (torch.rand(1, 1, *patch, device=device) > 0.5).float()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        with autocast(device, precision):
            logits = model(image)
        loss_fn(logits.float(), label).backward()
        torch.cuda.synchronize(device)
        # the weights were allocated before `start`: add them, and Adam's two moments
        return torch.cuda.max_memory_allocated(device) - start + 3 * weights
    saved = 0

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor), autocast(device, precision):
        logits = model(image)
    loss_fn(logits.float(), label).backward()
    # saved activations + their gradients in flight (about as large) + weights, grads, Adam moments
    return 2 * saved + 4 * weights


def measure_step_memory(spec: ModelSpec, device: torch.device, precision: Precision) -> StepMemory:
    small = spec.valid_side(32)
    large = spec.valid_side(small + max(16, spec.divisor))
    low = _step_bytes(spec.name, device, precision, (small,) * 3)
    high = _step_bytes(spec.name, device, precision, (large,) * 3)
    per_voxel = max((high - low) / (large**3 - small**3), 1.0)
    return StepMemory(fixed=max(low - per_voxel * small**3, 0.0), per_voxel=per_voxel)


def largest_valid_patch(spec: ModelSpec, volume: tuple[int, int, int]) -> tuple[int, int, int]:
    """Each side: the largest the model accepts within the volume (or its smallest, for tiny ones)."""
    sides = []
    for side in volume:
        fitting = (min(side, MAX_AUTO_SIDE) // spec.divisor) * spec.divisor
        sides.append(fitting if fitting >= spec.min_side else spec.valid_side(side))
    return tuple(sides)  # type: ignore[return-value]


def choose_sizes(
    spec: ModelSpec,
    device: torch.device,
    precision: Precision,
    smallest_volume: tuple[int, int, int],
    patch: tuple[int, int, int] | str,
    batch: int | str,
    patches_per_epoch: int,
    shape: tuple[float, float, float] = (1.0, 1.0, 1.0),
    max_side: int = MAX_AUTO_SIDE,
    pow2: bool = False,
) -> tuple[tuple[int, int, int], int, list[str]]:
    """Resolve `auto` patch and/or batch; return (patch, batch, log lines with the reasons).

    `shape`: each axis's share of the finest axis's side (`budget.patch_shape`); `max_side`: the
    finest axis's largest side."""
    budget, where = memory_budget(device)
    memory = measure_step_memory(spec, device, precision)
    notes = []
    limit = largest_valid_patch(spec, smallest_volume)
    if patch == AUTO:
        trial_batch = PATCH_CHOICE_BATCH if batch == AUTO else int(batch)
        chosen = None
        side = spec.valid_side(spec.min_side, pow2)
        while side <= max_side:
            candidate = shaped_patch(spec, side, shape, limit, pow2)
            if memory.bytes(candidate, trial_batch) > budget:
                break
            chosen = candidate
            side = spec.valid_side(side + 1, pow2)
        if chosen is None:
            chosen = tuple(min(spec.valid_side(spec.min_side), cap) for cap in limit)
            notes.append(
                "--patch-size auto: even the smallest patch exceeds the memory budget; using it anyway"
            )
        patch = chosen  # type: ignore[assignment]
        notes.append(
            f"--patch-size auto: {'×'.join(map(str, patch))}, the largest patch (at most {max_side} along "
            f"the finest axis, shaped by the voxel size, clipped to the smallest training volume) whose "
            f"step at batch {trial_batch} fits the budget"
        )
    assert not isinstance(patch, str)
    if batch == AUTO:
        ceiling = max(1, min(MAX_AUTO_BATCH, patches_per_epoch))
        batch = 1
        while batch < ceiling and memory.bytes(patch, batch + 1) <= budget:
            batch += 1
        notes.append(
            f"--batch-size auto: {batch}, the largest that fits the budget "
            f"(at most {ceiling}: {MAX_AUTO_BATCH} or the patches per epoch)"
        )
    notes.append(
        f"memory: a step needs about {memory.bytes(patch, int(batch)) / GIB:.2f} GiB "
        f"(measured {memory.per_voxel:.0f} B per voxel of batch); budget {budget / GIB:.2f} GiB = {where}"
    )
    return patch, int(batch), notes
