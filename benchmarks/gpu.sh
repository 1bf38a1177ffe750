#!/usr/bin/env bash
# The GPU measurements issue 5 asks for, in one short run: patches/s, GPU utilisation and memory for
# each model at 128³, with and without mixed precision and torch.compile. One JSON line per run.
#   bash benchmarks/gpu.sh [EPOCHS]      (on a machine with an NVIDIA GPU, after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-2}
for model in SegResNet VNet TRAILMAP_MS; do
  for precision in fp32 auto; do
    for compile in "" "--no-compile"; do
      .venv/bin/python benchmarks/train_throughput.py --model "$model" --device cuda --patch 128 --batch 2 \
        --size 160 --volumes 4 --samples-per-image 4 --epochs "$epochs" --precision "$precision" $compile
    done
  done
done
