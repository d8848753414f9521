#!/usr/bin/env bash
# P4, data-parallel scaling on one node: training throughput of 2 ranks x 1
# thread against 1 rank x 1 thread, same per-rank batch (weak scaling, as the
# paper's runs), measured with train/examples/step_bench.rs (forward,
# backward, fused-buffer allreduce over MPI, update). Goal: >= 1.85x. Also
# the allreduce's share of a 2-rank step. ROUNDS (5) rounds, the two in a new
# random order each round (bench/lib.sh).
# Ends with lines RESULT <name> <median> <unit> goal <goal> min <min> max
# <max>; the speed-up's over the rounds' own ratios.
#
#   bench/scaling.sh [MODEL] [BATCH]     # default: wavenet 32
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODEL="${1:-wavenet}"
BATCH="${2:-32}"
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
ROUNDS="${ROUNDS:-5}"
SAMPLES="$(mktemp -d /tmp/sciflow-scaling-bench.XXXXXX)"
trap 'rm -rf "$SAMPLES"' EXIT
export PATH="$HOME/.cargo/bin:$PATH"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cargo build -q --example step_bench -p sciflow-train
OURS=target/debug/examples/step_bench

field() { "$PIPELINE_PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
one_rank() { field "$("$OURS" --model "$MODEL" --batch "$BATCH" --threads 1 --steps 15)" samples_per_second; }
two_ranks() {
  local out
  out=$(mpirun -n 2 --bind-to core "$OURS" --model "$MODEL" --batch "$BATCH" --threads 1 --steps 15)
  awk -v r="$(field "$out" allreduce_seconds)" -v s="$(field "$out" step_seconds)" 'BEGIN { print r / s }' >>"$SAMPLES/share"
  field "$out" samples_per_second
}
interleave "$ROUNDS" one_rank two_ranks
summary one_rank | result_line "scaling_${MODEL}_1rank" samples/s - %.1f
summary two_ranks | result_line "scaling_${MODEL}_2ranks" samples/s - %.1f
ratio_summary two_ranks one_rank | result_line "scaling_${MODEL}_speedup" x 1.85 %.3f
median_range <"$SAMPLES/share" | result_line "scaling_${MODEL}_allreduce_share" fraction - %.4f
