#!/usr/bin/env bash
# Train grids on a GPU machine as one detached job within a time budget, watch it, and take its finished records.
# Runs on the machine's own python3 with lossnb from src/ (PyTorch, torchvision, pandas, tqdm, torchmetrics and
# PyYAML must be there; nothing is installed). Data: FashionMNIST's four idx .gz files in data/fashion-mnist/
# (bash scripts/gpu_job.sh ship-data, on a machine that has them, puts them there: about 30 MB).
#
#   bash scripts/gpu_job.sh ship-data                 copy the Debian package's FashionMNIST into data/fashion-mnist/
#   bash scripts/gpu_job.sh speed OUT_DIR             the speed benchmark (benchmarks/trainer_speed.py), in the foreground
#   bash scripts/gpu_job.sh start MINUTES GRID...     start the job, detached: each grid in turn, in packs (--pack, default
#                                                     12), only packs whose whole runs fit in the minutes left
#   bash scripts/gpu_job.sh status                    finished records so far, and each running pack's latest epoch
#   bash scripts/gpu_job.sh wait MINUTES              status every minute until the job ends or MINUTES pass
#   bash scripts/gpu_job.sh collect OUT_DIR           OUT_DIR/records.tar.gz: the records the job finished (no checkpoints)
#
# Back on the machine with the repository: tar xzf records.tar.gz -C runs && git add runs && git commit.
# The job records the commit it runs in each config.json: set LOSSNB_GIT_COMMIT=$(git rev-parse HEAD) (and
# LOSSNB_GIT_DIRTY=1 if the tree had changes) where the copied tree has no .git of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
job=.gpu-job
python=${PYTHON:-python3}

records_since_start() {
  [ -f "$job/started" ] || return 0
  find runs -path runs/.staging -prune -o -name summary.json -newer "$job/started" -print | sed 's|/summary.json$||' | sort
}

case "${1:-}" in
  ship-data)
    mkdir -p data/fashion-mnist
    cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
    du -sh data/fashion-mnist ;;
  speed)
    out=${2:?OUT_DIR}
    mkdir -p "$out"
    "$python" benchmarks/trainer_speed.py --device cuda --out "$out/trainer_speed_cuda.json" ;;
  start)
    minutes=${2:?MINUTES}; shift 2
    [ $# -gt 0 ] || { echo "name at least one grid file" >&2; exit 2; }
    mkdir -p "$job"
    touch "$job/started"
    deadline=$(( $(date +%s) + ${minutes%.*} * 60 ))
    setsid nohup bash -c '
      deadline=$1; python=$2; pack=$3; shift 3
      for grid in "$@"; do
        left=$(( (deadline - $(date +%s)) / 60 ))
        [ "$left" -gt 0 ] || break
        "$python" -m lossnb.cli grid "$grid" --pack "$pack" --time-budget "$left" --data-root data --no-progress
      done
      echo "job ended $(date -u +%FT%TZ)"' _ "$deadline" "$python" "${PACK:-12}" "$@" > "$job/job.log" 2>&1 &
    echo $! > "$job/pid"
    echo "job $(cat "$job/pid") started: $*, $minutes minutes; progress: bash scripts/gpu_job.sh status" ;;
  status)
    [ -f "$job/started" ] || { echo "no job started here"; exit 1; }
    if kill -0 "$(cat "$job/pid")" 2>/dev/null; then echo "job running"; else echo "job not running"; fi
    echo "--- job log"; tr '\r' '\n' < "$job/job.log" | grep -v '^\s*$' | tail -n 12
    echo "--- records finished since the start: $(records_since_start | wc -l)"
    find runs/.logs -name '*.log' -newer "$job/started" 2>/dev/null | while read -r log; do
      echo "$(tr '\r' '\n' < "$log" | grep -v '^\s*$' | tail -n 1)"
    done ;;
  wait)
    until_=$(( $(date +%s) + ${2:?MINUTES} * 60 ))
    while kill -0 "$(cat "$job/pid")" 2>/dev/null && [ "$(date +%s)" -lt "$until_" ]; do sleep 60; done
    bash "$0" status ;;
  collect)
    out=${2:?OUT_DIR}
    mkdir -p "$out"
    mapfile -t dirs < <(records_since_start | sed 's|^runs/||')
    tar czf "$out/records.tar.gz" -C runs --files-from /dev/null "${dirs[@]}"
    echo "${#dirs[@]} records in $out/records.tar.gz ($(du -h "$out/records.tar.gz" | cut -f1))" ;;
  *)
    sed -n '2,20p' "$0"; exit 2 ;;
esac
