#!/usr/bin/env bash
# The main job: set up, execute the study notebooks with papermill into book/studies/, and build the book
# (HTML in _build/html, warnings as errors). Results come from the committed run records in runs/;
# nothing is retrained. To produce records, run a grid: lossnb grid grids/report-convnet.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/lossnb book
