#!/usr/bin/env bash
# Set up a new machine for lossnb: Debian packages (FashionMNIST, npm, a C++ compiler for torch.compile on a CPU;
# Chromium for the tests), a virtualenv in .venv with lossnb installed, and MathJax from npm for the book.
#   scripts/setup.sh          what the studies and the book need
#   scripts/setup.sh --test   also the test runner, the reference libraries the tests compare against, Chromium
set -euo pipefail
cd "$(dirname "$0")/.."

requirements=requirements.txt
apt_packages=()
[ -d /usr/share/datasets/fashion-mnist ] || apt_packages+=(dataset-fashion-mnist)
command -v npm >/dev/null || apt_packages+=(npm)
command -v g++ >/dev/null || apt_packages+=(g++)  # inductor builds its CPU kernels with it (`compile: true`)
if [ "${1:-}" = "--test" ]; then
  requirements=requirements-test.txt
  command -v chromium >/dev/null || apt_packages+=(chromium)
fi

if [ ${#apt_packages[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${apt_packages[@]}" >/dev/null
  else
    echo "note: missing Debian packages: ${apt_packages[*]} (install them, or pass --data-root for the data)" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r "$requirements"
.venv/bin/pip install -q --no-deps -e .
[ -f node_modules/mathjax/es5/tex-svg.js ] || npm ci --no-audit --no-fund --silent
# what this set-up was made from: scripts/lab.sh sets up again only when it changes
sha256sum requirements.txt pyproject.toml package-lock.json > .venv/.lossnb-setup
echo "lossnb set up in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
