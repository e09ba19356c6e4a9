#!/usr/bin/env bash
# The main job: set up, then run a real (CPU-sized) study run on FashionMNIST with the engine.
# The book build (papermill-executed studies -> jupyter-book) joins this script with issue #4.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lossnb train --arch convnet --dataset fashionmnist --loss focal --loss-param gamma=0.5 \
  --epochs 3 --train-subset 10000 --protocol demo --runs-dir _build/demo-runs --force
