"""How fast `voxseg train` answers a typo: seconds from start to exit 2 for a missing --images folder.

    .venv/bin/python benchmarks/error_latency.py [--runs 5]

Prints one JSON line: the best and median wall time of `voxseg train --images missing ...` (a fresh
process each run), and what a bare `python -c "import torch"` costs beside it, the floor the
answer would pay if the options were checked after importing the engine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _seconds(command: list[str], expected_exit: int) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != expected_exit:
        raise SystemExit(f"{command[:4]}... exited {result.returncode}: {result.stderr.strip()[:200]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    voxseg = str(Path(sys.executable).with_name("voxseg"))
    with tempfile.TemporaryDirectory() as scratch:
        missing = str(Path(scratch) / "missing")
        typo = [voxseg, "train", "--images", missing, "--labels", missing, "--results", f"{scratch}/r"]
        answers = [_seconds(typo, 2) for _ in range(args.runs)]
    torch_import = [_seconds([sys.executable, "-c", "import torch, monai"], 0) for _ in range(args.runs)]
    print(
        json.dumps(
            {
                "benchmark": "error_latency",
                "missing_images_best_s": round(min(answers), 3),
                "missing_images_median_s": round(statistics.median(answers), 3),
                "import_torch_monai_best_s": round(min(torch_import), 3),
                "runs": args.runs,
            }
        )
    )


if __name__ == "__main__":
    main()
