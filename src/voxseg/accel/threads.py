"""Compute threads that follow the machine's load: all cores when it is idle, fewer while other
processes keep cores busy.

PyTorch's CPU operators run on an OpenMP team of one thread per core, and every operator ends at a
barrier. When another process keeps a core busy, the thread sharing that core is descheduled for
whole time slices and the rest of the team waits for it at each barrier: on 2 cores, SegResNet's
step beside one busy single-thread process fell to 0.35× its speed alone, where a fair share is
about 0.67×. Measured ways out (acceptance 11's run, 2-core EPYC, patches/s alone / beside a busy
process):

* 2 threads, default OpenMP waiting: 4.54 / 1.57 (0.35×);
* `OMP_WAIT_POLICY=PASSIVE` (idle threads sleep instead of spinning): 4.27 / 2.56, but 6% slower
  alone, and it only works if set before the OpenMP runtime starts;
* `GOMP_SPINCOUNT=10000`: 4.88 / 1.54, no better beside the busy process;
* 1 thread: 2.72 / 2.65, 40% slower alone.

So the team is sized to the cores other processes leave free, measured between training steps from
the system's CPU time (psutil: `/proc/stat` on Linux, the same counters on macOS and Windows) minus
this process's own: on 2 cores beside one busy process,
one thread, which then runs undisturbed; back to all cores when the other process stops. No library
does this (PyTorch and OpenMP size the team once); `--threads N` fixes the count instead. The
thread count is process-wide, so it is restored when the run ends (napari hosts other plugins).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from time import perf_counter, process_time

import torch

log = logging.getLogger("voxseg")

#: seconds between two looks at the machine's load (a step of SegResNet on 64³ is ~0.2 s on 2 cores)
INTERVAL = 0.5
#: a core counts as taken when other processes use at least this much of it
TAKEN = 0.6


#: psutil's CPU time fields that are not work: idle and waiting for I/O; the guest fields are
#: already counted in user time on Linux
_NOT_BUSY = ("idle", "iowait", "guest", "guest_nice")


def _system_busy_seconds() -> float | None:
    """CPU seconds all processes have used since boot (user, system, interrupts, and time a virtual
    machine's host took: `steal`); None where psutil cannot read them."""
    import psutil

    try:
        times = psutil.cpu_times()
    except (OSError, RuntimeError):
        return None
    return sum(getattr(times, name) for name in times._fields if name not in _NOT_BUSY)


class ThreadGovernor:
    """Sizes PyTorch's thread team between steps: `tick()` is cheap (one read of the CPU counters
    at most every `INTERVAL` seconds)."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.threads = most
        self._last: tuple[float, float, float] | None = None
        self._others = 0.0  # cores other processes keep busy, smoothed

    def tick(self) -> None:
        now = perf_counter()
        if self._last is not None and now - self._last[0] < INTERVAL:
            return
        busy, own = _system_busy_seconds(), process_time()
        if busy is None:
            return
        if self._last is not None:
            wall = now - self._last[0]
            others = max(0.0, (busy - self._last[1]) - (own - self._last[2])) / wall
            self._others = others if self._others == 0.0 else 0.5 * (self._others + others)
            self._resize(max(1, min(self.most, self.most - int(self._others + 1 - TAKEN))))
        self._last = (now, busy, own)

    def _resize(self, threads: int) -> None:
        if threads == self.threads:
            return
        log.info(
            "cpu: other processes keep %.1f core(s) busy: %d compute thread(s) of %d",
            self._others,
            threads,
            self.most,
        )
        torch.set_num_threads(threads)
        self.threads = threads


@contextlib.contextmanager
def compute_threads(threads: int | None) -> Iterator[ThreadGovernor | None]:
    """`threads` compute threads for the block, or (None) a governor that follows the load; PyTorch's
    own count is restored afterwards."""
    before = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
            log.info("cpu: %d compute thread(s) (--threads)", threads)
            yield None
        else:
            governor = ThreadGovernor(before)
            governor.tick()  # the first look: the first step then already follows the load
            if _system_busy_seconds() is not None and before > 1:
                log.info("cpu: %d compute threads, fewer while other processes keep cores busy", before)
            yield governor
    finally:
        torch.set_num_threads(before)
