"""The throughput benchmark runs end to end and prints the fields the README's tables are made from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"


def test_benchmark_prints_one_json_line_per_run() -> None:
    command = [sys.executable, str(BENCHMARK), "--model", "SegResNet", "--patch", "16", "--size", "24"]
    command += ["--volumes", "3", "--epochs", "2", "--device", "cpu", "--target-dice", "0"]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300).stdout
    (line,) = output.splitlines()
    run = json.loads(line)
    assert run["model"] == "SegResNet" and run["device"] == "cpu" and run["epochs"] == 2
    assert run["patches_per_second"] > 0 and 0 <= run["data_wait_share"] < 1
    assert run["peak_rss_tree_mb"] > 100  # torch alone is more: the sampler read the process
    assert 0 <= run["best_val_dice"] <= 1
    assert run["seconds_to_target_dice"] is not None and run["seconds_to_target_dice"] > 0


def test_dice_clock_stays_empty_until_the_target_is_reached() -> None:
    sys.path.insert(0, str(BENCHMARK.parent))
    try:
        from train_throughput import DiceClock
    finally:
        sys.path.remove(str(BENCHMARK.parent))
    from voxseg.training.events import ValidationEnd

    clock = DiceClock(0.8)
    clock(ValidationEnd(epoch=1, dice=0.5, best_dice=0.5, best_epoch=1, improved=True))
    assert clock.seconds is None
    clock(ValidationEnd(epoch=2, dice=0.85, best_dice=0.85, best_epoch=2, improved=True))
    reached = clock.seconds
    assert reached is not None and reached >= 0
    clock(ValidationEnd(epoch=3, dice=0.9, best_dice=0.9, best_epoch=3, improved=True))
    assert clock.seconds == reached  # the first time counts
