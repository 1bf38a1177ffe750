"""keep_freed_memory(): while training, a freed block is reused without faulting in fresh pages."""

from __future__ import annotations

import resource

import pytest
import torch

from voxseg.training import heap

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="tunes glibc's malloc only")

BLOCK = 96 << 20  # above glibc's largest dynamic mmap threshold (32 MiB): unmapped on free by default


def _page_faults_to_refill() -> int:
    """Minor page faults of allocating and writing BLOCK bytes just after freeing a larger block (a
    training step reusing the last one's memory; the same size would not do: torch's 64-byte aligned
    allocations need a few bytes more than the block they follow)."""
    freed = torch.ones(2 * BLOCK, dtype=torch.uint8)
    del freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(BLOCK, dtype=torch.uint8)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_freed_blocks_are_reused_inside_and_returned_after() -> None:
    with heap.keep_freed_memory() as kept:
        if kept < 2 * BLOCK:
            pytest.skip(f"this glibc keeps blocks up to {kept >> 20} MiB only")
        with heap.keep_freed_memory():  # a second training at the same time
            pass
        inside = _page_faults_to_refill()  # still kept: the outer training runs on
    after = _page_faults_to_refill()
    # relative, so that huge pages (a few faults per 96 MiB) do not decide it
    assert after > 0 and inside * 10 < after


def test_leaves_malloc_alone_when_the_user_set_its_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # not a threshold: still tuned
    assert heap._glibc() is not None
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert heap._glibc() is None
