#!/usr/bin/env bash
# What portable mode costs: time per training step of each network with the
# machine's own kernels (`--reproducible native`) and with libtorch's CPU
# kernels pinned to the AVX2 baseline (`--reproducible portable`: ATen avx2,
# oneDNN <= AVX2, MKL's COMPATIBLE branch), same shapes, batch, threads and
# update; each run the median of 15 steps, ROUNDS (5) rounds with the two
# modes in a new random order each round (bench/lib.sh).
# Ends with lines RESULT <name> <median> <unit> goal - min <min> max <max>;
# step_<net>_portable_cost is portable's step time over native's (1.00:
# free), over the rounds' own ratios.
#
#   bench/portable.sh [THREADS]     # default: all cores
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
THREADS="${1:-$(nproc)}"
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
ROUNDS="${ROUNDS:-5}"
SAMPLES="$(mktemp -d /tmp/sciflow-portable-bench.XXXXXX)"
trap 'rm -rf "$SAMPLES"' EXIT
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q --workspace --examples
BENCH=target/debug/examples/step_bench

field() { "$PIPELINE_PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
for spec in "wavenet 64 64" "xception_mini 32 64" "small_cnn 64 64" "resnet18 16 64"; do
  read -r model batch size <<<"$spec"
  for mode in native portable; do
    eval "${mode}_$model() { field \"\$(\"$BENCH\" --model $model --batch $batch --size $size --threads $THREADS --steps 15 --reproducible $mode)\" step_seconds; }"
  done
  interleave "$ROUNDS" "native_$model" "portable_$model"
  summary "native_$model" 'x * 1000' | result_line "step_${model}_native" ms - %.1f
  summary "portable_$model" 'x * 1000' | result_line "step_${model}_portable" ms - %.1f
  ratio_summary "portable_$model" "native_$model" | result_line "step_${model}_portable_cost" x - %.3f
done
