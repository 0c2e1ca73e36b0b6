#!/usr/bin/env bash
# GPU check for a machine with PyTorch (CUDA) but no Rust and no network, from binaries built
# elsewhere into .device-bin/ (see README, "CUDA"). Runs: the CUDA link check of every binary, the
# CUDA tests (CPU and CUDA agreement), the main job on CUDA with GPU utilisation sampled, and
# optionally a benchmark. Environment: TIKTOK_METHODS (default "erm painvrl"; empty skips),
# SCALE_SET=1 adds the TikTok-sized set of scripts/make-scale-set.py with SCALE_METHODS (default
# "erm painvrl") and SCALE_TIMEOUT seconds each (default 200).
# Usage: scripts/gpu-check-prebuilt.sh OUT_DIR [bench args...]
#   e.g. scripts/gpu-check-prebuilt.sh "$OUT" --data data/tiktok --methods erm,painvrl --seeds 3
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/gpu-check-prebuilt.sh OUT_DIR [bench args...]}; shift
mkdir -p "$out"
bin=.device-bin
torch_lib=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib
export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
log() { echo "== $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
log "link check"; scripts/check-cuda-link.sh "$bin" 2>&1 || true
log "CUDA tests"; "$bin/cuda" --test-threads=1 2>&1 | tail -n 15
# utilisation sampler: SM % and memory used once a second, while the jobs below run
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 1 > "$out/gpu-util.csv" &
sampler=$!
mark() { echo "$(date +%H:%M:%S) $*" >> "$out/gpu-util-marks.txt"; }
for m in ${TIKTOK_METHODS-erm painvrl}; do
  mark "tiktok $m start"
  /usr/bin/time -f "tiktok $m: %e s wall, %M KiB peak RSS" "$bin/painvrl" train --data data/tiktok --method "$m" \
    --device cuda --out "/tmp/gpu-$m" --force 2>&1 | grep -E 'recall@20|wall' | tr '\n' ' '; echo
  mark "tiktok $m end"
done
if [ -n "${SCALE_SET:-}" ]; then
  python3 scripts/make-scale-set.py /tmp/scale >/dev/null
  for m in ${SCALE_METHODS:-erm painvrl}; do
    mark "scale $m start"
    timeout "${SCALE_TIMEOUT:-200}" /usr/bin/time -f "scale $m: %e s wall, %M KiB peak RSS" "$bin/painvrl" train \
      --data /tmp/scale --method "$m" --device cuda --out "/tmp/scale-$m" --force 2>&1 | grep -E 'wall|error' ; echo
    python3 -c "import json; r=json.load(open('/tmp/scale-$m/report.json')); print('scale $m timings', {k: round(v, 1) for k, v in r['timings'].items()})" 2>/dev/null
    mark "scale $m end"
  done
fi
kill "$sampler" 2>/dev/null
if [ $# -gt 0 ]; then
  log "bench $*"
  "$bin/painvrl" bench --device cuda --out /tmp/bench "$@" 2>&1 | grep -vE '^\[W' | tail -n 40
  cp /tmp/bench/results.md /tmp/bench/results.json /tmp/bench/front*.svg "$out/" 2>/dev/null
fi
