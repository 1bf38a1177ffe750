"""The background producer behind GPU-side augmentation: order, errors, early close, lookahead."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
import torch

from voxseg.accel.prefetch import in_background, prepared_ahead


def test_items_arrive_in_order_and_all_of_them() -> None:
    assert list(in_background(iter(range(50)), depth=3)) == list(range(50))


def test_a_producer_error_is_raised_in_the_consumer() -> None:
    def items():
        yield 1
        raise ValueError("bad volume")

    stream = in_background(items())
    assert next(stream) == 1
    with pytest.raises(ValueError, match="bad volume"):
        next(stream)


def test_producer_runs_ahead_while_the_consumer_works() -> None:
    """The point of it: the next item is prepared during the consumer's step, not after it."""

    def items():
        for index in range(6):
            time.sleep(0.1)  # preparing a batch
            yield index

    started = time.perf_counter()
    for _ in in_background(items(), depth=2):
        time.sleep(0.1)  # the training step
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0  # serial: 12 × 0.1 s = 1.2 s; overlapped: about 7 × 0.1 s = 0.7 s


def _producers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "voxseg-prefetch"]


def test_closing_early_stops_the_producer() -> None:
    def endless():
        index = 0
        while True:
            yield index
            index += 1

    with contextlib.closing(in_background(endless(), depth=2)) as stream:
        assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
        assert _producers()
    assert not _producers()  # closing joins the thread


def test_without_a_cuda_stream_batches_are_prepared_in_the_background_thread() -> None:
    makers = []

    def batches():
        for index in range(5):
            makers.append(threading.current_thread().name)
            yield (torch.full((2,), float(index)),)

    assert [float(t[0]) for (t,) in prepared_ahead(batches())] == list(range(5))
    assert makers == ["voxseg-prefetch"] * 5


def test_the_producer_thread_closes_what_it_iterates() -> None:
    """A generator's clean-up (a CUDA stream context, a loader) runs on the thread that ran it."""
    closed_on = []

    def endless():
        try:
            while True:
                yield 1
        finally:
            closed_on.append(threading.current_thread().name)

    with contextlib.closing(in_background(endless(), depth=2)) as stream:
        next(stream)
    assert closed_on == ["voxseg-prefetch"]
