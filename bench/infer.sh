#!/usr/bin/env bash
# Inference throughput and memory: our `infer.classifier` stage against the
# PyTorch script a user would write and tune (bench/infer_baseline.py: PIL
# decoding at the same DCT-domain reduction, the same crop and resize,
# standardise, the same network with the same weights through its
# TorchScript file `model.pt`, frozen, channels-last, under inference_mode,
# a DataLoader preparing images in worker processes -> probabilities ->
# Parquet), on the same images on the same cores, after a one-epoch training
# of the galaxies network (xception_mini, width 16) on the SDSS cutouts: the
# weights do not change the work.
#
# First each side's settings are swept on the 2,600 cutouts once each
# (ours: -j 1, 2 x batch 16, 32, 64; the script: workers 0, 1, 2 x libtorch
# threads 1, 2 x batch 32, 64, 128) and every point printed; then each side
# at its best runs ROUNDS (5) times on 10,000 inputs, the sides in a new
# random order each round, timed and with the peak resident memory of its
# whole process tree (bench/peak_rss.py: the script's worker processes
# count). Then the two catalogues' agreement, our peak memory at BIG inputs
# (one chunk per rank in memory: it should not grow), and ours on 2 MPI
# ranks against 1. The page cache is warm for both sides. Ends with lines
# RESULT <name> <median> <unit> goal <goal> [min <min> max <max>].
#
#   bench/infer.sh [IMAGES_DIR_WITH_LABELS_CSV] [BIG]   # default ../shared/data/gz1, 100000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC="$(realpath "${1:-../shared/data/gz1}")"
BIG="${2:-100000}"
ROUNDS="${ROUNDS:-5}"
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q --workspace --bins
BIN="$PWD/target/debug/pipeline"
W="$(mktemp -d /tmp/sciflow-infer-bench.XXXXXX)"
trap 'rm -rf "$W"' EXIT
SAMPLES="$W/samples"
CORES=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# Tables of N rows: objid,image (absolute paths, ids made distinct).
for n in 2600 10000 "$BIG"; do
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
params: { table: $W/in10000.csv, batch: 32 }
stages:
  sdss:
    uses: ingest.galaxy_images
    with: { labels: $SRC/labels.csv, size: 64, crop: 0.5, normalisation: { kind: standardize }, split: { val: 0.1, test: 0.2 } }
  train:
    uses: train.classifier
    with: { data: "\${sdss.dataset}", model: { arch: xception_mini, width: 16, middle_blocks: 2 }, epochs: 1, batch_size: 32, device: cpu }
  small:
    uses: infer.classifier
    with: { model: "\${train.model}", data: "\${sdss.dataset}", inputs: "\${params.table}", batch_size: "\${params.batch}", device: cpu }
  big:
    uses: infer.classifier
    with: { model: "\${train.model}", data: "\${sdss.dataset}", inputs: $W/in$BIG.csv, batch_size: "\${params.batch}", device: cpu }
YAML
"$BIN" -q run --until train "$W/infer.yaml"
cat "$SRC"/images/* >/dev/null 2>&1 || true

# One run of ours: STAGE TABLE BATCH THREADS [launcher...]; its seconds,
# the peak memory of its process tree (MiB) in $W/rss.
ours_run() {
  local stage=$1 table=$2 batch=$3 threads=$4
  shift 4
  measured "$@" "$BIN" -q run -j "$threads" --force "$stage" --only "$stage" \
    --set "params.table=$table" --set "params.batch=$batch" "$W/infer.yaml"
}
# One run of the script: TABLE BATCH WORKERS THREADS; as ours_run.
script_run() {
  measured "$PIPELINE_PYTHON" bench/infer_baseline.py "$1" "$W/wd/train/model.pt" \
    "$W/py.parquet" 64 0.5 "$2" "$3" "$4"
}
# COMMAND run under bench/peak_rss.py (its output dropped): prints its
# seconds, and writes its process tree's peak memory (MiB) to $W/rss.
measured() {
  "$PIPELINE_PYTHON" bench/peak_rss.py "$W/m.json" "$@" >/dev/null
  "$PIPELINE_PYTHON" -c 'import json, sys; m = json.load(open(sys.argv[1])); open(sys.argv[2], "w").write("%s\n" % m["peak_rss_mib"]); print(m["seconds"])' "$W/m.json" "$W/rss"
}

# The sweeps, on the 2,600 cutouts: images/s of every setting; the best kept.
# OURS_BEST="BATCH THREADS" and SCRIPT_BEST="BATCH WORKERS THREADS" skip them
# (to repeat the timed part with settings an earlier sweep chose).
best() { sort -g -k1 | tail -1 | cut -d' ' -f2-; }
: >"$W/sweep-ours"
: >"$W/sweep-script"
[[ -n "${OURS_BEST:-}" ]] && echo "0 $OURS_BEST" >"$W/sweep-ours"
[[ -n "${SCRIPT_BEST:-}" ]] && echo "0 $SCRIPT_BEST" >"$W/sweep-script"
for threads in 1 "$CORES"; do
  [[ -n "${OURS_BEST:-}" ]] && break
  for batch in 16 32 64; do
    r=$(awk -v s="$(ours_run small "$W/in2600.csv" "$batch" "$threads")" 'BEGIN{print 2600 / s}')
    printf 'sweep ours: -j %d, batch %d: %.0f images/s\n' "$threads" "$batch" "$r" >&2
    echo "$r $batch $threads" >>"$W/sweep-ours"
  done
done
for workers in 0 1 "$CORES"; do
  [[ -n "${SCRIPT_BEST:-}" ]] && break
  for threads in 1 "$CORES"; do
    for batch in 32 64 128; do
      r=$(awk -v s="$(script_run "$W/in2600.csv" "$batch" "$workers" "$threads")" 'BEGIN{print 2600 / s}')
      printf 'sweep script: %d workers, %d threads, batch %d: %.0f images/s\n' "$workers" "$threads" "$batch" "$r" >&2
      echo "$r $batch $workers $threads" >>"$W/sweep-script"
    done
  done
done
read -r OURS_BATCH OURS_THREADS < <(best <"$W/sweep-ours")
read -r PY_BATCH PY_WORKERS PY_THREADS < <(best <"$W/sweep-script")
echo "best: ours -j $OURS_THREADS batch $OURS_BATCH; script $PY_WORKERS workers, $PY_THREADS threads, batch $PY_BATCH" >&2
echo "RESULT infer_best_ours batch_${OURS_BATCH}_j_${OURS_THREADS} setting goal -"
echo "RESULT infer_best_script batch_${PY_BATCH}_workers_${PY_WORKERS}_threads_${PY_THREADS} setting goal -"

# Each at its best, interleaved, on 10,000 inputs.
ours() { ours_run small "$W/in10000.csv" "$OURS_BATCH" "$OURS_THREADS"; cat "$W/rss" >>"$SAMPLES/ours_rss"; }
script() { script_run "$W/in10000.csv" "$PY_BATCH" "$PY_WORKERS" "$PY_THREADS"; cat "$W/rss" >>"$SAMPLES/script_rss"; }
interleave "$ROUNDS" ours script
export N=10000
summary ours 'n / x' | result_line "infer_ours_${CORES}_cores" images/s - %.0f
summary script 'n / x' | result_line "infer_pytorch_${CORES}_cores" images/s - %.0f
ratio_summary script ours | result_line infer_speedup_vs_pytorch x 2 %.2f
median_range <"$SAMPLES/ours_rss" | result_line infer_peak_rss_ours_10000 MiB - %.0f
median_range <"$SAMPLES/script_rss" | result_line infer_peak_rss_pytorch_10000 MiB - %.0f

# The two catalogues (the last run of each): same ids in the same order,
# nearly the same probabilities (the two libjpeg builds and the resampling
# filters differ slightly).
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

small_rss=$(median_range <"$SAMPLES/ours_rss" | cut -d' ' -f1)
big=$(ours_run big "$W/in10000.csv" "$OURS_BATCH" "$OURS_THREADS")
big_rss=$(cat "$W/rss")
one=$(ours_run small "$W/in10000.csv" "$OURS_BATCH" "$OURS_THREADS")
two=$(ours_run small "$W/in10000.csv" "$OURS_BATCH" 1 mpirun -n 2 --oversubscribe --bind-to none)
awk -v N="$BIG" -v b="$big" -v r1="$small_rss" -v r2="$big_rss" -v t1="$one" -v t2="$two" 'BEGIN {
  printf "RESULT infer_ours_%d_inputs %.0f images/s goal -\n", N, N / b
  printf "RESULT infer_peak_rss_ours_%d %.0f MiB goal -\n", N, r2
  printf "RESULT infer_peak_rss_ratio %.3f x goal 1.10\n", r2 / r1
  printf "RESULT infer_2_ranks_vs_1 %.2f x goal -\n", t1 / t2
}'
