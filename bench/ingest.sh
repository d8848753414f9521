#!/usr/bin/env bash
# Ingest throughput: our `ingest.galaxy_images` stage against the
# straightforward Python script (bench/ingest_baseline.py: PIL + numpy +
# safetensors + pyarrow) doing the same job on the same images in the same
# run: decode the JPEG, crop the centre half, resize to 64 px, standardise each
# band, seeded stratified split, 128-sample safetensors shards and a Parquet
# manifest. Also reports the real-data accuracy of the last galaxies run, if any.
# Ends with one line per figure: RESULT <name> <value> <unit> goal <goal>.
#
#   bench/ingest.sh [LABELS_CSV]    # default ../shared/data/gz1/labels.csv (2,600 SDSS cutouts)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LABELS="$(realpath "${1:-../shared/data/gz1/labels.csv}")"
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q --workspace --bins
BIN="$PWD/target/debug/pipeline"
W="$(mktemp -d /tmp/sciflow-ingest-bench.XXXXXX)"
trap 'rm -rf "$W"' EXIT
N=$(($(wc -l <"$LABELS") - 1))
THREADS=$(nproc)

cat >"$W/ingest.yaml" <<YAML
version: 1
name: ingest-bench
workdir: $W/wd
seed: 1234
stages:
  sdss:
    uses: ingest.galaxy_images
    with:
      labels: $LABELS
      size: 64
      crop: 0.5
      normalisation: { kind: standardize }
      split: { val: 0.1, test: 0.2 }
      shard_size: 128
YAML

now() { date +%s.%N; }
# Warm the page cache for both sides alike.
cat "$(dirname "$LABELS")"/images/* >/dev/null 2>&1 || true

best_ours=""
best_py=""
for rep in 1 2 3; do
  rm -rf "$W/wd" "$W/py"
  t0=$(now)
  "$BIN" -q run "$W/ingest.yaml" >/dev/null
  t1=$(now)
  "$PIPELINE_PYTHON" bench/ingest_baseline.py "$LABELS" "$W/py" 64 0.5 128 1234 >/dev/null
  t2=$(now)
  ours=$(awk "BEGIN{print $t1 - $t0}")
  py=$(awk "BEGIN{print $t2 - $t1}")
  printf 'run %d: ours %.2f s (%d threads), python %.2f s\n' "$rep" "$ours" "$THREADS" "$py"
  best_ours=$(awk "BEGIN{b=\"$best_ours\"; print (b == \"\" || $ours < b) ? $ours : b}")
  best_py=$(awk "BEGIN{b=\"$best_py\"; print (b == \"\" || $py < b) ? $py : b}")
done
# Same samples in both outputs.
"$PIPELINE_PYTHON" - "$W/wd/sdss" "$W/py" <<'PY'
import sys, pyarrow.parquet as pq
a = pq.read_table(f"{sys.argv[1]}/manifest.parquet").num_rows
b = pq.read_table(f"{sys.argv[2]}/manifest.parquet").num_rows
assert a == b, (a, b)
print(f"both wrote {a} samples")
PY
awk -v n="$N" -v o="$best_ours" -v p="$best_py" 'BEGIN {
  printf "RESULT ingest_ours %.0f images/s goal -\n", n / o
  printf "RESULT ingest_python %.0f images/s goal -\n", n / p
  printf "RESULT ingest_speedup %.2f x goal 5\n", p / o
}'
M=runs/galaxies/evaluate/metrics.json
if [[ -f $M ]]; then
  "$PIPELINE_PYTHON" - "$M" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"RESULT galaxies_test_accuracy {m['accuracy']:.4f} fraction goal 0.90")
print(f"RESULT galaxies_test_auc {m['auc']:.4f} fraction goal -")
PY
fi
