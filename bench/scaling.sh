#!/usr/bin/env bash
# P4, data-parallel scaling on one node: training throughput of 2 ranks x 1
# thread against 1 rank x 1 thread, same per-rank batch (weak scaling, as the
# paper's runs), measured with train/examples/step_bench.rs (forward,
# backward, fused-buffer allreduce over MPI, update). Goal: >= 1.85x. Also
# the allreduce's share of a 2-rank step.
# Ends with one line per figure: RESULT <name> <value> <unit> goal <goal>.
#
#   bench/scaling.sh [MODEL] [BATCH]     # default: wavenet 32
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODEL="${1:-wavenet}"
BATCH="${2:-32}"
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
export PATH="$HOME/.cargo/bin:$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cargo build -q --example step_bench -p sciflow-train
OURS=target/debug/examples/step_bench

field() { "$PIPELINE_PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
one=$("$OURS" --model "$MODEL" --batch "$BATCH" --threads 1 --steps 15)
two=$(mpirun -n 2 --bind-to core "$OURS" --model "$MODEL" --batch "$BATCH" --threads 1 --steps 15)
echo "1 rank:  $one"
echo "2 ranks: $two"
awk -v a="$(field "$one" samples_per_second)" -v b="$(field "$two" samples_per_second)" \
    -v r="$(field "$two" allreduce_seconds)" -v s="$(field "$two" step_seconds)" -v m="$MODEL" 'BEGIN {
  printf "RESULT scaling_%s_1rank %.1f samples/s goal -\n", m, a
  printf "RESULT scaling_%s_2ranks %.1f samples/s goal -\n", m, b
  printf "RESULT scaling_%s_speedup %.3f x goal 1.85\n", m, b / a
  printf "RESULT scaling_%s_allreduce_share %.4f fraction goal -\n", m, r / s
}'
