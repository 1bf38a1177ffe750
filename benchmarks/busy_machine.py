"""Training speed on a busy machine: the same run alone, beside a busy process, and beside another
training, for each thread setting; one JSON line per (setting, condition).

    .venv/bin/python benchmarks/busy_machine.py [--settings auto fixed passive one] [--repeats 1]

The run is acceptance 11's (SegResNet, 64³ patches, batch 1, 3 epochs on four 64³ volumes).
Settings: `auto` (voxseg's default: threads follow the load), `fixed` (`--threads` = cores, what
voxseg did before), `passive` (`fixed` with `OMP_WAIT_POLICY=PASSIVE`), `one` (`--threads 1`).
Conditions: `alone`; `busy` (beside one single-thread busy loop); `training` (beside a second
identical training with the same setting; its speed is reported too). `ratio` is patches/s over the
same setting's `alone`. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from train_throughput import make_dataset  # benchmarks/ is on the path when a benchmark runs

CORES = os.cpu_count() or 1
SETTINGS: dict[str, tuple[list[str], dict[str, str]]] = {
    "auto": ([], {}),
    "fixed": (["--threads", str(CORES)], {}),
    "passive": (["--threads", str(CORES)], {"OMP_WAIT_POLICY": "PASSIVE"}),
    "one": (["--threads", "1"], {}),
}


def _start(data: tuple[Path, Path], results: Path, name: str, setting: str) -> subprocess.Popen:
    args, env = SETTINGS[setting]
    voxseg = str(Path(sys.executable).with_name("voxseg"))
    command = [
        voxseg, "train", "--images", str(data[0]), "--labels", str(data[1]), "--results", str(results),
        "--run-name", name, "--model", "SegResNet", "--batch-size", "1", "--patch-size", "64",
        "--samples-per-image", "2", "--epochs", "3", "--seed", "0", "--no-tensorboard", *args,
    ]  # fmt: skip
    return subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _speed(process: subprocess.Popen, results: Path, name: str) -> float:
    _, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{name}: {err.decode()[-300:]}")
    return json.loads((results / name / "summary.json").read_text())["patches_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        data = make_dataset(root / "data", 4, 64, 0)  # four 64³ volumes of balls
        results = root / "results"
        for repeat in range(args.repeats):
            for setting in args.settings:
                tag = f"{setting}-{repeat}"
                alone = _speed(_start(data, results, f"{tag}-alone", setting), results, f"{tag}-alone")
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                try:
                    busy = _speed(_start(data, results, f"{tag}-busy", setting), results, f"{tag}-busy")
                finally:
                    hog.kill()
                first = _start(data, results, f"{tag}-pair-a", setting)
                second = _start(data, results, f"{tag}-pair-b", setting)
                pair = (_speed(first, results, f"{tag}-pair-a"), _speed(second, results, f"{tag}-pair-b"))
                for condition, speed in (("alone", alone), ("busy", busy), ("training", pair[0])):
                    record = {
                        "benchmark": "busy_machine",
                        "setting": setting,
                        "condition": condition,
                        "patches_per_second": speed,
                        "ratio": round(speed / alone, 3),
                        "cores": CORES,
                        "repeat": repeat,
                    }
                    if condition == "training":
                        record["other_training_patches_per_second"] = pair[1]
                    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
