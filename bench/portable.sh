#!/usr/bin/env bash
# What portable mode costs: time per training step of each network with the
# machine's own kernels (`--reproducible native`) and with libtorch's CPU
# kernels pinned to the AVX2 baseline (`--reproducible portable`: ATen avx2,
# oneDNN <= AVX2, MKL's COMPATIBLE branch), same shapes, batch, threads and
# update, alternating the two twice and keeping each side's best.
# Ends with one line per network: RESULT step_<net>_portable_cost <ratio> x,
# portable's step time over native's (1.00: free).
#
#   bench/portable.sh [THREADS]     # default: all cores
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
THREADS="${1:-$(nproc)}"
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q --workspace --examples
BENCH=target/debug/examples/step_bench

field() { "$PIPELINE_PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
for spec in "wavenet 64 64" "xception_mini 32 64" "small_cnn 64 64" "resnet18 16 64"; do
  read -r model batch size <<<"$spec"
  best_n=""; best_p=""
  for rep in 1 2; do
    for mode in native portable; do
      out=$("$BENCH" --model "$model" --batch "$batch" --size "$size" --threads "$THREADS" --steps 15 --reproducible "$mode")
      echo "$mode: $out"
      s=$(field "$out" step_seconds)
      if [ "$mode" = native ]; then
        best_n=$(awk "BEGIN{b=\"$best_n\"; print (b == \"\" || $s < b) ? $s : b}")
      else
        best_p=$(awk "BEGIN{b=\"$best_p\"; print (b == \"\" || $s < b) ? $s : b}")
      fi
    done
  done
  awk -v m="$model" -v n="$best_n" -v p="$best_p" 'BEGIN {
    printf "RESULT step_%s_native %.1f ms goal -\n", m, n * 1000
    printf "RESULT step_%s_portable %.1f ms goal -\n", m, p * 1000
    printf "RESULT step_%s_portable_cost %.3f x goal -\n", m, p / n
  }'
done
