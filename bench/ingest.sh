#!/usr/bin/env bash
# Ingest throughput: our `ingest.galaxy_images` stage against the Python
# script a competent user would write (bench/ingest_baseline.py: PIL with
# `draft()` for libjpeg's DCT-domain reduction, numpy, safetensors, pyarrow)
# doing the same job on the same images: decode at the same reduced scale,
# the same centre crop, resize to 64 px, seeded stratified split, 128-sample
# safetensors shards and a Parquet manifest. Two variants of what is stored,
# each side writing the same thing:
#
#   u8   the 8-bit pixels with the `decode` block (standardised by the loader)
#   f32  each band standardised at ingest and stored as f32 (`dtype: f32`)
#
# Equal cores on both sides: ours with -j 1 against one Python process, and
# ours with -j N against a multiprocessing pool of N workers (N = nproc),
# each worker writing its own shards. The table lists every image COPIES
# times under distinct ids (10,400 rows for the 2,600 SDSS cutouts by
# default), so start-up (libtorch's, Python's imports) weighs on neither side
# as it would on 2 s runs. ROUNDS (5) rounds, the sides in a new random order
# each round, the page cache warm; then the u8 variant on N cores with the
# page cache dropped before every run (cold: with COPIES > 1 only each
# file's first read; needs root, else skipped and said). Both outputs are checked to hold the same samples with nearly the
# same pixels. Ends with one line per figure: RESULT <name> <median> <unit>
# goal <goal> min <min> max <max>; a ratio's median and range are over the
# rounds' own ratios.
#
#   bench/ingest.sh [LABELS_CSV] [COPIES]  # default ../shared/data/gz1/labels.csv, 4
#   PROFILE=release bench/ingest.sh        # our release build (default: dev)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LABELS="$(realpath "${1:-../shared/data/gz1/labels.csv}")"
COPIES="${2:-4}"
ROUNDS="${ROUNDS:-5}"
PROFILE="${PROFILE:-dev}"
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q --profile "$PROFILE" --workspace --bins
BIN="$PWD/target/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")/pipeline"
W="$(mktemp -d /tmp/sciflow-ingest-bench.XXXXXX)"
trap 'rm -rf "$W"' EXIT
SAMPLES="$W/samples"
N_CORES=$(nproc)

# The table, COPIES times, with absolute image paths and ids made distinct.
"$PIPELINE_PYTHON" - "$LABELS" "$W/labels.csv" "$COPIES" <<'PY'
import csv, sys
from pathlib import Path
src, dst, copies = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rows = list(csv.DictReader(open(src, newline="")))
with open(dst, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["objid", "label", "image"])
    for k in range(copies):
        for r in rows:
            w.writerow([f"{r['objid']}-{k}", r["label"], str((src.parent / r["image"]).resolve())])
PY
N=$(($(wc -l <"$W/labels.csv") - 1))
export N

for dtype in u8 f32; do
  cat >"$W/ingest-$dtype.yaml" <<YAML
version: 1
name: ingest-bench-$dtype
workdir: $W/wd-$dtype
seed: 1234
stages:
  sdss:
    uses: ingest.galaxy_images
    with:
      labels: $W/labels.csv
      size: 64
      crop: 0.5
      dtype: $dtype
      normalisation: { kind: standardize }
      split: { val: 0.1, test: 0.2 }
      shard_size: 128
YAML
done

now() { date +%s.%N; }
COLD=0
# One run of a side, its seconds: ours DTYPE CORES, python DTYPE CORES.
ours() {
  rm -rf "$W/wd-$1"
  page_cache "$(dirname "$LABELS")"/images/*
  local t0 t1
  t0=$(now)
  "$BIN" -q run -j "$2" "$W/ingest-$1.yaml" >/dev/null
  t1=$(now)
  awk "BEGIN{print $t1 - $t0}"
}
baseline() {
  rm -rf "$W/py-$1"
  page_cache "$(dirname "$LABELS")"/images/*
  local t0 t1
  t0=$(now)
  "$PIPELINE_PYTHON" bench/ingest_baseline.py "$W/labels.csv" "$W/py-$1" 64 0.5 128 1234 "$1" "$2" >/dev/null
  t1=$(now)
  awk "BEGIN{print $t1 - $t0}"
}
for dtype in u8 f32; do
  for cores in 1 "$N_CORES"; do
    eval "ours_${dtype}_$cores() { ours $dtype $cores; }"
    eval "python_${dtype}_$cores() { baseline $dtype $cores; }"
  done
done
ours_cold() { ours u8 "$N_CORES"; }
python_cold() { baseline u8 "$N_CORES"; }

for dtype in u8 f32; do
  for cores in 1 "$N_CORES"; do
    interleave "$ROUNDS" "ours_${dtype}_$cores" "python_${dtype}_$cores"
  done
done
if [[ -w /proc/sys/vm/drop_caches ]]; then
  COLD=1
  interleave "$ROUNDS" ours_cold python_cold
  COLD=0
else
  echo "cold-cache runs skipped: dropping the page cache needs root" >&2
fi

# Same samples on both sides, and nearly the same pixels (the two libjpeg
# builds, the resampling filters differ), in both variants: the network's
# input made from each side's shards by the README's numpy lines.
for dtype in u8 f32; do
"$PIPELINE_PYTHON" - "$W/wd-$dtype/sdss" "$W/py-$dtype" README.md "$dtype" <<'PY'
import json, re, sys
import numpy as np, pyarrow.parquet as pq
from safetensors.numpy import load_file

text = open(sys.argv[3], encoding="utf-8").read()
section = text[text.index("### A compact dataset's input"):]
scope = {}
exec(re.search(r"```python\n(.*?)```", section, re.S).group(1), scope)

def load(d):
    m = pq.read_table(f"{d}/manifest.parquet")
    try:
        info = json.load(open(f"{d}/dataset.json"))
    except FileNotFoundError:
        info = {}
    shards = {}
    out = {}
    for i, s, k in zip(*(m.column(c).to_pylist() for c in ["sample_id", "shard", "index"])):
        if s not in shards:
            x = load_file(f"{d}/shards/shard-{s:05d}.safetensors")["x"]
            shards[s] = scope["network_input"](x, info)
        out[str(i)] = shards[s][k]
    return out

a, b = load(sys.argv[1]), load(sys.argv[2])
assert set(a) == set(b), (len(a), len(b))
r = np.array([np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] for i in sorted(a)])
print(f"{sys.argv[4]}: both wrote the same {len(a)} samples; pixel correlation per sample: median {np.median(r):.4f}, min {r.min():.4f}")
assert np.median(r) > 0.98, "the two outputs disagree"
PY
done
# What each side stores: the same bytes in each variant, a quarter in u8.
BYTES_U8=$(cat "$W"/wd-u8/sdss/shards/* | wc -c)
BYTES_F32=$(cat "$W"/wd-f32/sdss/shards/* | wc -c)
BYTES_PY_U8=$(cat "$W"/py-u8/shards/* | wc -c)
awk -v a="$BYTES_U8" -v b="$BYTES_F32" -v c="$BYTES_PY_U8" 'BEGIN {
  printf "RESULT ingest_dataset_bytes_u8 %d bytes goal - python %d\n", a, c
  printf "RESULT ingest_dataset_bytes_f32 %d bytes goal -\n", b
  printf "RESULT ingest_dataset_bytes_ratio %.3f fraction goal 0.30\n", a / b
}'
for dtype in u8 f32; do
  for cores in 1 "$N_CORES"; do
    o="ours_${dtype}_$cores" p="python_${dtype}_$cores"
    summary "$o" 'n / x' | result_line "ingest_${dtype}_ours_${cores}_cores" images/s - %.0f
    summary "$p" 'n / x' | result_line "ingest_${dtype}_python_${cores}_cores" images/s - %.0f
    ratio_summary "$p" "$o" | result_line "ingest_${dtype}_speedup_${cores}_cores" x 5 %.2f
  done
done
if [[ -f "$SAMPLES/ours_cold" ]]; then
  summary ours_cold 'n / x' | result_line "ingest_u8_cold_ours_${N_CORES}_cores" images/s - %.0f
  summary python_cold 'n / x' | result_line "ingest_u8_cold_python_${N_CORES}_cores" images/s - %.0f
  ratio_summary python_cold ours_cold | result_line "ingest_u8_cold_speedup_${N_CORES}_cores" x 5 %.2f
fi
M=runs/galaxies/evaluate/metrics.json
if [[ -f $M ]]; then
  "$PIPELINE_PYTHON" - "$M" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"RESULT galaxies_test_accuracy {m['accuracy']:.4f} fraction goal 0.90")
print(f"RESULT galaxies_test_auc {m['auc']:.4f} fraction goal -")
PY
fi
