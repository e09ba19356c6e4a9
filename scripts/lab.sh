#!/usr/bin/env bash
# Set up, then open the study notebooks in JupyterLab. Its "Python 3" kernel is .venv's, which has lossnb.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/jupyter lab notebooks/ "$@"
