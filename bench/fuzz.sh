#!/usr/bin/env bash
# The fuzz harness at length: every reader (FITS, JPEG/PNG, labels CSV, HDF5
# bank and LVC) and the workflow compiler on mutated real files, many more
# cases than the test suite runs. Prints each reader's counts, then one line
# per reader: RESULT fuzz_<reader>_cases <n> cases goal - (a panic, a hang or
# an unbounded allocation fails the run instead).
#
#   bench/fuzz.sh                 # 30,000 cases per reader, a few minutes on 2 cores
#   FUZZ_CASES=200000 FUZZ_SEED=9 bench/fuzz.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
export PATH="$HOME/.cargo/bin:$PATH"
export FUZZ_CASES="${FUZZ_CASES:-30000}" FUZZ_SEED="${FUZZ_SEED:-1}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Each test prints `fuzz READER: N cases, R read, F refused, 0 panics`
# (after cargo's `test NAME ... ` on the same line).
counts='fuzz [^:]+: [0-9]+ cases, [0-9]+ [a-z]+, [0-9]+ refused, [0-9]+ panics'
cargo test --workspace --test fuzz -- --nocapture --test-threads 1 >"$log" 2>&1
cargo test --workspace --lib mutated_workflows -- --nocapture >>"$log" 2>&1
grep -oE "$counts" "$log"
grep -oE "$counts" "$log" | awk -F': ' '{
  name = substr($1, 6); gsub(/[ \/]/, "_", name)
  split($2, n, " "); print "RESULT fuzz_" name "_cases " n[1] " cases goal -"
}'
