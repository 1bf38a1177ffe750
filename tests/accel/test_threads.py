"""The compute-thread team follows the machine's load, and PyTorch's count is restored after a run."""

from __future__ import annotations

import pytest
import torch

from voxseg.accel import accelerated, threads
from voxseg.accel.threads import ThreadGovernor, compute_threads


class FakeMachine:
    """System CPU seconds as /proc/stat would report them: this process's own plus `others` cores
    busy elsewhere, on a clock the test advances."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.wall = self.own = self.elsewhere = 0.0
        self.others = 0.0
        monkeypatch.setattr(threads, "_system_busy_seconds", lambda: self.own + self.elsewhere)
        monkeypatch.setattr(threads, "perf_counter", lambda: self.wall)
        monkeypatch.setattr(threads, "process_time", lambda: self.own)

    def run(self, seconds: float, own_cores: float) -> None:
        self.wall += seconds
        self.own += seconds * own_cores
        self.elsewhere += seconds * self.others


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_busy_neighbour_takes_a_thread_and_gives_it_back(monkeypatch, two_threads) -> None:
    machine = FakeMachine(monkeypatch)
    governor = ThreadGovernor(2)
    governor.tick()
    machine.others = 1.0  # a busy single-thread process
    for _ in range(3):
        machine.run(0.6, own_cores=1.0)
        governor.tick()
    assert governor.threads == torch.get_num_threads() == 1
    machine.others = 0.05  # it ended: only the system's own noise
    for _ in range(4):
        machine.run(0.6, own_cores=1.0)
        governor.tick()
    assert governor.threads == torch.get_num_threads() == 2


def test_light_background_load_keeps_every_thread(monkeypatch, two_threads) -> None:
    machine = FakeMachine(monkeypatch)
    governor = ThreadGovernor(2)
    governor.tick()
    machine.others = 0.4  # a GUI repainting, a browser tab
    for _ in range(5):
        machine.run(0.6, own_cores=1.6)
        governor.tick()
    assert governor.threads == 2


def test_looks_are_spaced_out(monkeypatch, two_threads) -> None:
    """Between two looks less than INTERVAL apart nothing is read: a tick per step stays cheap."""
    machine = FakeMachine(monkeypatch)
    reads = []
    monkeypatch.setattr(threads, "_system_busy_seconds", lambda: reads.append(1) or machine.own)
    governor = ThreadGovernor(2)
    for _ in range(10):
        machine.run(0.1, own_cores=2.0)
        governor.tick()
    assert len(reads) == 2  # at 0.1 s and at 0.6 s (the interval is 0.5 s)


def test_fixed_threads_and_restore(two_threads) -> None:
    with compute_threads(1) as governor:
        assert governor is None and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), compute_threads(None) as governor:
        assert governor is not None
        torch.set_num_threads(1)  # as the governor would under load
        raise RuntimeError("the run failed")
    assert torch.get_num_threads() == 2


def test_accelerated_governs_cpu_runs_only(two_threads) -> None:
    with accelerated(torch.device("cpu")) as acceleration:
        assert acceleration.governor is not None
        acceleration.between_steps()
    with accelerated(torch.device("cpu"), threads=1) as acceleration:
        assert acceleration.governor is None and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
