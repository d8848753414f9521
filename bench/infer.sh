#!/usr/bin/env bash
# Inference throughput and memory: our `infer.classifier` stage against the
# PyTorch script a user would write (bench/infer_baseline.py: PIL decode ->
# crop -> resize -> standardise -> the same network with the same weights
# through its TorchScript file `model.pt` -> probabilities -> Parquet), on the
# same images at equal cores, after a one-epoch training of the galaxies
# network (xception_mini, width 16) on the SDSS cutouts: the weights do not
# change the work.
#
# The input tables list the 2,600 cutouts again and again under distinct ids
# (10,000 and 100,000 rows); the page cache is warm for both sides. Measured:
# images/s of ours and of the script at 10,000 (best of two), the two
# catalogues' agreement, our peak RSS at 10,000 and at 100,000 inputs (one
# chunk per rank in memory: it should not grow), and our throughput on 2 MPI
# ranks against 1. Both sides score batches of 32 (our default). Ends with lines RESULT <name> <value> <unit> goal <goal>.
#
#   bench/infer.sh [IMAGES_DIR_WITH_LABELS_CSV] [BIG]   # default ../shared/data/gz1, 100000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC="$(realpath "${1:-../shared/data/gz1}")"
BIG="${2:-100000}"
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q --workspace --bins
BIN="$PWD/target/debug/pipeline"
W="$(mktemp -d /tmp/sciflow-infer-bench.XXXXXX)"
trap 'rm -rf "$W"' EXIT
CORES=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# Tables of N rows: objid,image (absolute paths, ids made distinct).
for n in 10000 "$BIG"; do
  "$PIPELINE_PYTHON" - "$SRC/labels.csv" "$W/in$n.csv" "$n" <<'PY'
import csv, sys
from pathlib import Path
src, dst, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rows = list(csv.DictReader(open(src, newline="")))
with open(dst, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["objid", "image"])
    for i in range(n):
        r = rows[i % len(rows)]
        w.writerow([f"{r['objid']}-{i // len(rows)}", str((src.parent / r["image"]).resolve())])
PY
done

cat >"$W/infer.yaml" <<YAML
version: 1
name: infer-bench
workdir: $W/wd
seed: 1234
stages:
  sdss:
    uses: ingest.galaxy_images
    with: { labels: $SRC/labels.csv, size: 64, crop: 0.5, normalisation: { kind: standardize }, split: { val: 0.1, test: 0.2 } }
  train:
    uses: train.classifier
    with: { data: "\${sdss.dataset}", model: { arch: xception_mini, width: 16, middle_blocks: 2 }, epochs: 1, batch_size: 32, device: cpu }
  small:
    uses: infer.classifier
    with: { model: "\${train.model}", data: "\${sdss.dataset}", inputs: $W/in10000.csv, device: cpu }
  big:
    uses: infer.classifier
    with: { model: "\${train.model}", data: "\${sdss.dataset}", inputs: $W/in$BIG.csv, device: cpu }
YAML
"$BIN" -q run --until train "$W/infer.yaml"
cat "$SRC"/images/* >/dev/null 2>&1 || true

now() { date +%s.%N; }
# run_ours STAGE [mpirun args...]: seconds of the whole run; peak RSS (KiB) in $W/rss.
run_ours() {
  local stage=$1 t0 t1
  shift
  t0=$(now)
  /usr/bin/time -f %M -o "$W/rss" "$@" "$BIN" -q run --force "$stage" --only "$stage" "$W/infer.yaml"
  t1=$(now)
  awk "BEGIN{print $t1 - $t0}"
}
best_ours="" best_py=""
for rep in 1 2; do
  ours=$(run_ours small)
  rss_small=$(cat "$W/rss")
  t0=$(now)
  "$PIPELINE_PYTHON" bench/infer_baseline.py "$W/in10000.csv" "$W/wd/train/model.pt" "$W/py.parquet" 64 0.5 32 "$CORES" >/dev/null
  t1=$(now)
  py=$(awk "BEGIN{print $t1 - $t0}")
  printf '10000 images, %d cores, run %d: ours %.1f s, pytorch %.1f s\n' "$CORES" "$rep" "$ours" "$py" >&2
  best_ours=$(awk "BEGIN{b=\"$best_ours\"; print (b == \"\" || $ours < b) ? $ours : b}")
  best_py=$(awk "BEGIN{b=\"$best_py\"; print (b == \"\" || $py < b) ? $py : b}")
done

# The two catalogues: same ids in the same order, nearly the same probabilities
# (the JPEG decoders' DCT scaling and the resampling differ slightly).
"$PIPELINE_PYTHON" - "$W/wd/small/catalogue.parquet" "$W/py.parquet" <<'PY'
import sys
import numpy as np, pyarrow.parquet as pq
a, b = pq.read_table(sys.argv[1]), pq.read_table(sys.argv[2])
assert a.column("objid").to_pylist() == b.column("objid").to_pylist()
pa_, pb = np.array(a.column("p_spiral")), np.array(b.column("p_1"))
agree = np.mean((pa_ > 0.5) == (pb > 0.5))
print(f"same {len(pa_)} ids in order; |p(spiral) difference| median {np.median(abs(pa_ - pb)):.4f}, "
      f"max {abs(pa_ - pb).max():.4f}; same class for {agree:.4f}")
print(f"RESULT infer_class_agreement {agree:.4f} fraction goal -")
PY

big=$(run_ours big)
rss_big=$(cat "$W/rss")
two=$(run_ours small mpirun -n 2 --oversubscribe --bind-to none)
awk -v n=10000 -v N="$BIG" -v c="$CORES" -v o="$best_ours" -v p="$best_py" -v b="$big" \
    -v r1="$rss_small" -v r2="$rss_big" -v t2="$two" 'BEGIN {
  printf "RESULT infer_ours_%d_cores %.0f images/s goal -\n", c, n / o
  printf "RESULT infer_pytorch_%d_cores %.0f images/s goal -\n", c, n / p
  printf "RESULT infer_speedup_vs_pytorch %.2f x goal 2\n", p / o
  printf "RESULT infer_ours_%d_inputs %.0f images/s goal -\n", N, N / b
  printf "RESULT infer_peak_rss_10000 %.0f MiB goal -\n", r1 / 1024
  printf "RESULT infer_peak_rss_%d %.0f MiB goal -\n", N, r2 / 1024
  printf "RESULT infer_peak_rss_ratio %.3f x goal 1.10\n", r2 / r1
  printf "RESULT infer_2_ranks_vs_1 %.2f x goal -\n", o / t2
}'
