"""keep_freed_memory(): while training, a freed block is reused without faulting in fresh pages;
release_fragments() hands the free pages back once (after a validation)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from voxseg.accel import heap

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="tunes glibc's malloc only")

# Measured in a fresh interpreter: in the test process, other tests' threads, arenas and
# not-yet-collected trainings make malloc's state (and so the page-fault counts) unpredictable.
_MEASURE = r"""
import json, os, resource, torch
from voxseg.accel import heap

BLOCK = 96 << 20  # above glibc's largest dynamic mmap threshold (32 MiB): unmapped on free by default

def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def page_faults_to_refill():
    # a training step reusing the last one's memory; a larger block is freed first because torch's
    # 64-byte aligned allocations need a few bytes more than a block of the same size
    freed = torch.ones(2 * BLOCK, dtype=torch.uint8)
    del freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(BLOCK, dtype=torch.uint8)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

with heap.keep_freed_memory() as kept:
    with heap.keep_freed_memory():  # a second training at the same time
        pass
    inside = page_faults_to_refill()  # still kept: the outer training runs on
    held = resident_bytes()
    heap.release_fragments()  # after a validation: the free pages go back to the kernel
    returned = held - resident_bytes()
    page_faults_to_refill()  # the next step faults its working set in once
    again = page_faults_to_refill()  # and then it is kept again
after = page_faults_to_refill()
print(json.dumps({"kept": kept, "block": BLOCK, "inside": inside, "returned": returned, "again": again,
                  "after": after}))
"""


def test_freed_blocks_are_reused_inside_and_returned_after() -> None:
    run = subprocess.run([sys.executable, "-c", _MEASURE], capture_output=True, text=True, check=True)
    faults = json.loads(run.stdout)
    if faults["kept"] < 2 * faults["block"]:
        pytest.skip(f"this glibc keeps blocks up to {faults['kept'] >> 20} MiB only")
    # relative, so that huge pages (a few faults per 96 MiB) do not decide it
    assert faults["after"] > 0 and faults["inside"] * 10 < faults["after"], faults
    # resident memory, not page faults: where the first refill after a trim lands in the heap varies
    # from run to run (address-space layout), but the pages handed back do not
    assert faults["returned"] >= faults["block"], faults
    assert faults["again"] * 10 < faults["after"], faults


def test_leaves_malloc_alone_when_the_user_set_its_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # not a threshold: still tuned
    assert heap._glibc() is not None
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert heap._glibc() is None
