#!/usr/bin/env bash
# P3, the training step: time per step of the same network in our code (tch,
# train/examples/step_bench.rs) and in PyTorch from Python
# (bench/train_step_baseline.py), same shapes, same batch, same intra-op
# threads, same update (SGD with momentum), in one run. Networks: the AI-GW
# WaveNet (2 x 2050 samples, stride 8) and the galaxy classifier
# (xception_mini width 16, 3 x 64 x 64). Goal: ours <= 0.9 x PyTorch's time.
# Each side runs ROUNDS (5) times, the sides in a new random order each
# round (bench/lib.sh); each run's figure is its median step over 15.
# Ends with one line per figure: RESULT <name> <median> <unit> goal <goal>
# min <min> max <max>; the ratio's over the rounds' own ratios.
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
# shellcheck source=bench/lib.sh
source bench/lib.sh
ROUNDS="${ROUNDS:-5}"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q --workspace --example step_bench
OURS=target/debug/examples/step_bench

SAMPLES="$(mktemp -d /tmp/sciflow-step-bench.XXXXXX)"
trap 'rm -rf "$SAMPLES"' EXIT
field() { "$PIPELINE_PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
for spec in "wavenet 64" "xception_mini 32"; do
  read -r model batch <<<"$spec"
  eval "ours_$model() { field \"\$(\"$OURS\" --model $model --batch $batch --threads $THREADS --steps 15)\" step_seconds; }"
  eval "pytorch_$model() { field \"\$(\"\$PIPELINE_PYTHON\" bench/train_step_baseline.py --model $model --batch $batch --threads $THREADS --steps 15)\" step_seconds; }"
  interleave "$ROUNDS" "ours_$model" "pytorch_$model"
  summary "ours_$model" 'x * 1000' | result_line "step_${model}_ours" ms - %.1f
  summary "pytorch_$model" 'x * 1000' | result_line "step_${model}_pytorch" ms - %.1f
  ratio_summary "ours_$model" "pytorch_$model" | result_line "step_${model}_ratio" x 0.9 %.3f
done
