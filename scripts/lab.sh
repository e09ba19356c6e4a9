#!/usr/bin/env bash
# Set up, then open the study notebooks in JupyterLab. Its "Python 3" kernel is .venv's, which has lossnb.
# JupyterLab refuses to start as root without --allow-root; most GPU containers run as root, so it is given
# there. LOSSNB_NO_SETUP=1 skips the set-up when it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${LOSSNB_NO_SETUP:-0}" = 1 ] || bash scripts/setup.sh
as_root=()
if [ "$(id -u)" = 0 ]; then as_root=(--allow-root); fi
exec .venv/bin/jupyter lab notebooks/ "${as_root[@]}" "$@"
