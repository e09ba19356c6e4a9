#!/usr/bin/env bash
# Set up, then open the study notebooks in JupyterLab. Its "Python 3" kernel is .venv's, which has lossnb.
# JupyterLab refuses to start as root without --allow-root; most GPU containers run as root, so it is given
# there. The set-up runs only when .venv is missing or was made from other requirements (LOSSNB_NO_SETUP=1 skips
# it always).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${LOSSNB_NO_SETUP:-0}" != 1 ] && ! { [ -x .venv/bin/jupyter ] && sha256sum --status -c .venv/.lossnb-setup 2>/dev/null; }; then
  bash scripts/setup.sh
fi
as_root=()
if [ "$(id -u)" = 0 ]; then as_root=(--allow-root); fi
exec .venv/bin/jupyter lab notebooks/ "${as_root[@]}" "$@"
