#!/usr/bin/env bash
# One-shot check for a GPU machine: set-up, the CUDA tests, and device timings of the main job.
# Usage: scripts/gpu-check.sh [OUT_DIR]   (writes gpu-check.log there)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-.}}
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
scripts/setup-libtorch.sh
cargo test --release --features cuda-tests --test cuda
time cargo run --release --example train_tiktok -- --device cuda
PAINVRL_BENCH_PAPER=1 cargo bench --bench eval -- --noplot
