#!/usr/bin/env bash
# Set up a new machine for lossnb: FashionMNIST (Debian package), a virtualenv in .venv, lossnb installed.
#   scripts/setup.sh          runtime requirements
#   scripts/setup.sh --test   also the test runner and the reference libraries the tests compare against
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=requirements.txt
[ "${1:-}" = "--test" ] && requirements=requirements-test.txt

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null
  else
    echo "note: FashionMNIST not found; install the Debian package dataset-fashion-mnist or use --data-root" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r "$requirements"
.venv/bin/pip install -q --no-deps -e .
echo "lossnb set up in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
