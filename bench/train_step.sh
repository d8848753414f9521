#!/usr/bin/env bash
# P3, the training step: time per step of the same network in our code (tch,
# train/examples/step_bench.rs) and in PyTorch from Python
# (bench/train_step_baseline.py), same shapes, same batch, same intra-op
# threads, same update (SGD with momentum), in one run. Networks: the AI-GW
# WaveNet (2 x 2050 samples, stride 8) and the galaxy classifier
# (xception_mini width 16, 3 x 64 x 64). Goal: ours <= 0.9 x PyTorch's time.
# Ends with one line per figure: RESULT <name> <value> <unit> goal <goal>.
#
#   bench/train_step.sh [THREADS]     # default: all cores
#
# Python's `import torch` needs the CUDA libraries the PyPI wheel links
# against (even on CPU), so this script asks setup for the full stack.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
THREADS="${1:-$(nproc)}"
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q --example step_bench -p sciflow-train
OURS=target/debug/examples/step_bench

field() { "$PIPELINE_PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
for spec in "wavenet 64" "xception_mini 32"; do
  read -r model batch <<<"$spec"
  # Alternate the sides, twice each, keeping each side's best.
  best_o=""; best_p=""
  for rep in 1 2; do
    o=$("$OURS" --model "$model" --batch "$batch" --threads "$THREADS" --steps 15)
    p=$("$PIPELINE_PYTHON" bench/train_step_baseline.py --model "$model" --batch "$batch" --threads "$THREADS" --steps 15)
    echo "ours:    $o"
    echo "pytorch: $p"
    so=$(field "$o" step_seconds); sp=$(field "$p" step_seconds)
    best_o=$(awk "BEGIN{b=\"$best_o\"; print (b == \"\" || $so < b) ? $so : b}")
    best_p=$(awk "BEGIN{b=\"$best_p\"; print (b == \"\" || $sp < b) ? $sp : b}")
  done
  awk -v m="$model" -v o="$best_o" -v p="$best_p" -v b="$batch" 'BEGIN {
    printf "RESULT step_%s_ours %.1f ms goal -\n", m, o * 1000
    printf "RESULT step_%s_pytorch %.1f ms goal -\n", m, p * 1000
    printf "RESULT step_%s_ratio %.3f x goal 0.9\n", m, o / p
  }'
done
