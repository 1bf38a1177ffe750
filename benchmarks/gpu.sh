#!/usr/bin/env bash
# The GPU measurements issue 5 asks for: patches/s, GPU utilisation and memory for each model at
# 128³ (batch 2), with and without mixed precision and torch.compile. One JSON line per run.
#   bash benchmarks/gpu.sh            (on a machine with an NVIDIA GPU, after scripts/setup.sh)
# RUNS lists model:precision:flags (flags comma-separated), e.g.
#   RUNS="SegResNet:auto:--no-compile SegResNet:auto:--no-compile,--no-augment" bash benchmarks/gpu.sh
# EPOCHS (3), SAMPLES per image (8), PYTHON (.venv/bin/python) and RUN_TIMEOUT (seconds per run, 300) can be set too.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
default_runs=""
for model in SegResNet VNet TRAILMAP_MS; do
  default_runs+=" $model:fp32:--no-compile $model:auto:--no-compile $model:fp32: $model:auto:"
done
for run in ${RUNS:-$default_runs}; do
  IFS=: read -r model precision flags <<<"$run"
  # shellcheck disable=SC2086  # the flags are a word list
  timeout "${RUN_TIMEOUT:-300}" "$python" benchmarks/train_throughput.py --model "$model" --device cuda \
    --patch 128 --batch 2 --size 160 --volumes 4 --samples-per-image "${SAMPLES:-8}" --epochs "${EPOCHS:-3}" \
    --precision "$precision" ${flags//,/ } \
    || echo "{\"model\": \"$model\", \"precision\": \"$precision\", \"flags\": \"$flags\", \"failed\": true}"
done
