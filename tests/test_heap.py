"""keep_freed_memory(): while training, a freed block is reused without faulting in fresh pages."""

from __future__ import annotations

import resource

import pytest
import torch

from voxseg.training import heap

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="tunes glibc's malloc only")

BLOCK = 96 << 20  # above glibc's largest dynamic mmap threshold (32 MiB): unmapped on free by default
PAGES = BLOCK // resource.getpagesize()


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
    with heap.keep_freed_memory():
        with heap.keep_freed_memory():  # a second training at the same time
            pass
        assert _page_faults_to_refill() < PAGES // 10  # still kept: the outer training runs on
    assert _page_faults_to_refill() > PAGES // 2


def test_leaves_malloc_alone_when_the_user_tuned_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert heap._glibc() is None
