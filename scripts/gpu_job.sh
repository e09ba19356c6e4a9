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
#   bash scripts/gpu_job.sh window MINUTES OUT_DIR [--carry GRID]... GRID...
#                                                     a GPU box lent for MINUTES, used in one foreground command: the
#                                                     CUDA checks, <= 90 s of speed figures, the grids in packs with the
#                                                     time left (a --carry grid's last pack runs until the time is up;
#                                                     the others start only packs whose whole runs fit), then
#                                                     OUT_DIR/records.tar.gz and, where they fit, the unfinished packs'
#                                                     checkpoints in parts of at most 15 MiB (checkpoints.tar.gz.part-*)
#
# A window's checkpoints continue in the next one: here, cat OUT/checkpoints.tar.gz.part-* | tar xz -C runs/.checkpoints
# and send runs/.checkpoints along with the tree; the grid resumes those packs first.
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
  window)
    minutes=${2:?MINUTES}; out=${3:?OUT_DIR}; shift 3
    start=$(date +%s)
    end=$(( start + ${minutes%.*} * 60 - ${RESERVE_SECONDS:-45} ))  # the archive is written in the reserve
    carry=(); grids=()
    while [ $# -gt 0 ]; do
      if [ "$1" = --carry ]; then carry+=("${2:?--carry GRID}"); grids+=("$2"); shift 2; else grids+=("$1"); shift; fi
    done
    [ ${#grids[@]} -gt 0 ] || { echo "name at least one grid file" >&2; exit 2; }
    mkdir -p "$out" "$job" runs
    touch "$job/started"
    say() { echo "[window $(( $(date +%s) - start ))s] $*" | tee -a "$out/window.log"; }
    cuda=$("$python" -c 'import torch; print(int(torch.cuda.is_available()))')
    if [ "$cuda" = 1 ]; then
      say "CUDA checks"
      timeout $(( (end - $(date +%s)) / 4 )) "$python" -m pytest -q -p no:cacheprovider tests/test_cuda.py \
        -k "graphed_steps_equal or warm_up or resume" > "$out/cuda_checks.txt" 2>&1 \
        && say "CUDA checks passed" || say "CUDA checks FAILED or cut short (see cuda_checks.txt)"
      say "speed figures (at most 90 s)"
      timeout 90 "$python" benchmarks/trainer_speed.py --device cuda --archs resnet20 mobilenetv2 --packs 1 12 \
        --out "$out/trainer_speed_cuda.json" > "$out/speed.txt" 2>&1 || say "speed figures cut short"
    else
      say "no CUDA GPU: checks and speed figures skipped"
    fi
    for grid in "${grids[@]}"; do
      left=$(( end - $(date +%s) ))
      [ "$left" -gt "${MIN_GRID_SECONDS:-60}" ] || { say "no time left for $grid"; continue; }
      partial=(); for c in "${carry[@]}"; do [ "$c" = "$grid" ] && partial=(--partial); done
      say "$grid: $(( left / 60 )) min left ${partial[*]}"
      timeout --signal=TERM "$left" "$python" -m lossnb.cli grid "$grid" --pack "${PACK:-12}" \
        --time-budget "$(( (left + 59) / 60 ))" "${partial[@]}" --data-root "${DATA_ROOT:-data}" --no-progress \
        >> "$out/grid.log" 2>&1 || say "$grid: stopped at the deadline or failed (grid.log)"
    done
    bash "$0" collect "$out" | tee -a "$out/window.log"
    # the checkpoints of runs that did not finish, in parts that fit what a window returns
    unfinished=$(cd runs/.checkpoints 2>/dev/null && find . -name 'epoch*.pt' -newer "../../$job/started" \
                 -printf '%h\n' | sort -u | while read -r d; do [ -f "../$d/summary.json" ] || echo "$d"; done)
    if [ -n "$unfinished" ]; then
      # shellcheck disable=SC2086
      tar czf "$out/checkpoints.tar.gz" -C runs/.checkpoints $unfinished
      size=$(stat -c %s "$out/checkpoints.tar.gz")
      if [ "$size" -le $(( ${CHECKPOINT_PARTS:-5} * 15 * 1024 * 1024 )) ]; then
        split -b 15M "$out/checkpoints.tar.gz" "$out/checkpoints.tar.gz.part-"
        say "checkpoints of $(echo "$unfinished" | wc -l) unfinished run(s): $(ls "$out"/checkpoints.tar.gz.part-* | wc -l) part(s)"
      else
        say "checkpoints of the unfinished runs ($(( size / 1048576 )) MiB) do not fit what a window returns: left out"
      fi
      rm "$out/checkpoints.tar.gz"
    fi
    say "window done" ;;
  *)
    sed -n '2,32p' "$0"; exit 2 ;;
esac
