"""A run always records how it ended: a closed console costs only the output; a signal, a
KeyboardInterrupt, an exception or a closed event stream leave summary.json with a status and reason."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest
from conftest import signalled_training

import voxseg
from voxseg.config import TrainConfig
from voxseg.console import ConsoleReporter, ConsoleStream, closable_console
from voxseg.training.events import BatchEnd, Event, RunEnd
from voxseg.training.session import EVENTS_CLOSED

Dataset = Callable[..., tuple[Path, Path]]
Config = Callable[..., TrainConfig]
Args = Callable[..., list[str]]

#: how long a tiny CLI run may take on 2 busy cores before the test gives up on it (not a timing check)
PROCESS_TIMEOUT_S = 180


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture
def broken_pipe() -> Iterator[TextIO]:
    """A text stream whose reader has gone, as stdout is under `| head -1` once head exits."""
    read, write = os.pipe()
    os.close(read)
    stream = open(write, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    yield stream
    stream.close()


def _stop_at_first_batch(action: Callable[[], None]) -> Callable[[Event], None]:
    def listener(event: Event) -> None:
        if isinstance(event, BatchEnd) and event.epoch == 1 and event.batch == 1:
            action()

    return listener


# -- the console goes away ----------------------------------------------------------------------------


def test_a_console_stream_drops_writes_once_its_reader_is_gone(broken_pipe: TextIO) -> None:
    stream = ConsoleStream(broken_pipe)
    stream.write("lost\n" * 20_000)  # more than a pipe holds: the write itself meets the closed pipe
    stream.flush()
    assert stream.gone
    stream.write("after\n")
    broken_pipe.write("buffered\n")
    broken_pipe.flush()  # its descriptor now leads to os.devnull: the interpreter's exit flush is quiet


def test_a_console_stream_passes_other_write_errors_on() -> None:
    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        ConsoleStream(FullDisk()).write("x")


def test_a_command_s_closed_stdout_is_flushed_before_it_returns(
    broken_pipe: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdout", broken_pipe)
    with closable_console():
        print("voxseg: run completed")  # buffered: only the flush on the way out meets the closed pipe
    assert sys.stdout is broken_pipe
    broken_pipe.flush()


def test_the_console_log_goes_on_without_a_reader(
    broken_pipe: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken_pipe.reconfigure(line_buffering=True)  # as stderr is
    monkeypatch.setattr(sys, "stderr", broken_pipe)
    with ConsoleReporter() as reporter:
        for _ in range(3):
            logging.getLogger("voxseg").info("a log line nobody reads")
    assert isinstance(reporter.stream, ConsoleStream) and reporter.stream.gone


@pytest.mark.parametrize("stderr", ["into the pipe", "to a file"])
def test_train_piped_into_head_trains_to_the_end(
    stderr: str, make_dataset: Dataset, fast_args: Args, tmp_path: Path
) -> None:
    """`voxseg train ... 2>&1 | head -1` (the log meets the closed pipe), and `voxseg train ... | true`
    (the final line on stdout does): exit 0, summary.json `completed`, no noise on stderr."""
    images, labels = make_dataset(tmp_path / "data", n=2, size=16, cells=2)
    argv = [*fast_args(images, labels, tmp_path / "results", epochs=2), "--run-name", "piped"]
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voxseg", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stderr == "into the pipe" else err,
        )
        assert proc.stdout is not None
        if stderr == "into the pipe":
            assert proc.stdout.readline().startswith(b"run folder")
        proc.stdout.close()
        try:
            code = proc.wait(timeout=PROCESS_TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    noise = (tmp_path / "stderr.txt").read_text()
    assert code == 0, noise
    assert "Traceback" not in noise and "Exception ignored" not in noise
    summary = _summary(tmp_path / "results" / "piped")
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert summary["reason"] == "all 2 epoch(s) trained" and summary["error"] is None


# -- signals, interrupts, failures ----------------------------------------------------------------------


def test_sigterm_stops_the_cli_run_and_names_itself(
    make_dataset: Dataset, fast_args: Args, tmp_path: Path
) -> None:
    """What SLURM sends before pre-empting a job: stopped after the batch in progress, saved, recorded."""
    images, labels = make_dataset(tmp_path / "data", n=2, size=16, cells=2)
    argv = [*fast_args(images, labels, tmp_path / "results", epochs=1000), "--run-name", "term"]
    run_dir = tmp_path / "results" / "term"
    code = signalled_training([*argv], run_dir, tmp_path, signal.SIGTERM, PROCESS_TIMEOUT_S)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    summary = _summary(run_dir)
    assert (summary["status"], summary["reason"]) == ("stopped", "SIGTERM")
    assert summary["epochs_completed"] < 1000 and (run_dir / "last.pth").is_file()
    assert "run stopped (SIGTERM)" in (tmp_path / "stdout.txt").read_text()
    assert "run stopped (SIGTERM)" in (run_dir / "train.log").read_text()


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_hangup_stops_the_run_instead_of_killing_it(
    make_dataset: Dataset, fast_config: Config, tmp_path: Path
) -> None:
    """SIGHUP (the terminal closed) would end the process without a record; now it is a stop."""
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        pytest.skip("SIGHUP is ignored here (nohup), as it stays during a run")
    images, labels = make_dataset(tmp_path / "data", n=2, size=16, cells=2)

    def hang_up() -> None:
        assert signal.getsignal(signal.SIGHUP) != signal.SIG_DFL, "SIGHUP would kill the test process"
        os.kill(os.getpid(), signal.SIGHUP)

    config = fast_config(images, labels, epochs=5, samples_per_image=3)
    result = voxseg.train(config, listeners=[_stop_at_first_batch(hang_up)], progress=False)
    assert result.status == "stopped" and _summary(result.run_dir)["reason"] == "SIGHUP"
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # given back after the run


def test_a_keyboard_interrupt_is_recorded_as_a_stop(
    make_dataset: Dataset, fast_config: Config, tmp_path: Path
) -> None:
    images, labels = make_dataset(tmp_path / "data", n=2, size=16, cells=2)

    def interrupt() -> None:
        raise KeyboardInterrupt

    config = fast_config(images, labels, epochs=5, samples_per_image=3)
    result = voxseg.train(config, listeners=[_stop_at_first_batch(interrupt)], progress=False)
    summary = _summary(result.run_dir)
    assert (summary["status"], summary["reason"], summary["error"]) == ("stopped", "KeyboardInterrupt", None)


def test_a_stop_request_and_a_closed_event_stream_are_told_apart(
    make_dataset: Dataset, fast_config: Config, tmp_path: Path
) -> None:
    images, labels = make_dataset(tmp_path / "data", n=2, size=16, cells=2)
    requested = voxseg.TrainingSession(fast_config(images, labels, epochs=5, run_name="requested"))
    for event in requested.events():
        if isinstance(event, BatchEnd):
            requested.request_stop()
    assert isinstance(event, RunEnd) and event.summary["reason"] == "stop requested"
    events = voxseg.TrainingSession(fast_config(images, labels, epochs=5, run_name="closed")).events()
    for event in events:
        if isinstance(event, BatchEnd):
            break
    events.close()
    summary = _summary(tmp_path / "results" / "closed")
    assert (summary["status"], summary["reason"]) == ("stopped", EVENTS_CLOSED)


def test_a_failure_records_the_exception_s_line(
    make_dataset: Dataset, fast_config: Config, tmp_path: Path
) -> None:
    images, labels = make_dataset(tmp_path / "data", n=2, size=16, cells=2)

    def explode() -> None:
        raise RuntimeError("boom in a callback\nwith a second line")

    with pytest.raises(RuntimeError, match="boom"):
        voxseg.train(
            fast_config(images, labels, epochs=3), listeners=[_stop_at_first_batch(explode)], progress=False
        )
    summary = _summary(tmp_path / "results" / "run")
    assert (summary["status"], summary["reason"]) == ("failed", "RuntimeError: boom in a callback")
    assert summary["error"] == "RuntimeError: boom in a callback\nwith a second line"


def test_a_failure_after_the_last_epoch_is_not_a_completed_run(
    make_dataset: Dataset, fast_config: Config, tmp_path: Path
) -> None:
    """A listener failing at RunEnd keeps the engine from recording the end: the session does."""
    images, labels = make_dataset(tmp_path / "data", n=2, size=16, cells=2)

    def fail_at_the_end(event: Event) -> None:
        if isinstance(event, RunEnd):
            raise OSError("the listener's disk is full")

    with pytest.raises(OSError, match="disk is full"):
        voxseg.train(fast_config(images, labels), listeners=[fail_at_the_end], progress=False)
    run_dir = tmp_path / "results" / "run"
    summary = _summary(run_dir)
    assert (summary["status"], summary["reason"]) == ("failed", "OSError: the listener's disk is full")
    assert summary["epochs_completed"] == 1
    assert "run failed: OSError: the listener's disk is full" in (run_dir / "train.log").read_text()
