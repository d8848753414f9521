#!/usr/bin/env bash
# P1, the loader: samples/s of our loader (train/examples/loader_bench.rs:
# shuffled shards, 2 reader threads, prefetch 4, batches handed to libtorch)
# against PyTorch's DataLoader (2 workers, shuffle, same batch) reading the
# same samples from HDF5 (h5py) and from a numpy memmap
# (bench/loader_baseline.py), in one run. Goal: >= 3x. Then the share of a
# real training epoch (`train.classifier`, small_cnn) spent waiting for data,
# from its history.json. Goal: < 5 %.
# Ends with one line per figure: RESULT <name> <value> <unit> goal <goal>.
#
#   bench/loader.sh [SAMPLES] [SIZE]     # default 4096 images of 3 x 96 x 96
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-4096}"
SIZE="${2:-96}"
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q --workspace --bins
cargo build -q --example loader_bench -p sciflow-train
W="$(mktemp -d /tmp/sciflow-loader-bench.XXXXXX)"
trap 'rm -rf "$W"' EXIT

cat >"$W/loader.yaml" <<YAML
version: 1
name: loader-bench
workdir: $W/wd
seed: 1
stages:
  data:
    uses: ingest.random_images
    with: { count: $N, size: $SIZE, classes: 10, shard_size: 64 }
  train:
    uses: train.classifier
    with:
      data: \${data.dataset}
      model: { arch: small_cnn, width: 16 }
      epochs: 1
      batch_size: 64
      augment: false
YAML
target/debug/pipeline -q run "$W/loader.yaml" --until data
"$PIPELINE_PYTHON" bench/loader_baseline.py prepare "$W/wd/data" "$W/py"
cat "$W"/wd/data/shards/* "$W"/py/* >/dev/null   # page cache warm for all sides

field() { "$PIPELINE_PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
ours=$(target/debug/examples/loader_bench "$W/wd/data" --batch 64 --workers 2 --prefetch 4 --epochs 3 2>/dev/null)
h5=$("$PIPELINE_PYTHON" bench/loader_baseline.py run "$W/py" --format h5 --batch 64 --workers 2 --epochs 3)
npy=$("$PIPELINE_PYTHON" bench/loader_baseline.py run "$W/py" --format npy --batch 64 --workers 2 --epochs 3)
echo "ours:          $ours"
echo "pytorch h5py:  $h5"
echo "pytorch numpy: $npy"

target/debug/pipeline -q run "$W/loader.yaml" --only train
wait=$("$PIPELINE_PYTHON" -c "
import json, sys
h = json.load(open(sys.argv[1]))['history']
print(sum(e['data_wait_seconds'] for e in h) / sum(e['seconds'] for e in h))" "$W/wd/train/history.json")

awk -v o="$(field "$ours" samples_per_second)" -v h="$(field "$h5" samples_per_second)" \
    -v n="$(field "$npy" samples_per_second)" -v w="$wait" 'BEGIN {
  printf "RESULT loader_ours %.0f samples/s goal -\n", o
  printf "RESULT loader_pytorch_h5py %.0f samples/s goal -\n", h
  printf "RESULT loader_pytorch_numpy %.0f samples/s goal -\n", n
  printf "RESULT loader_speedup_vs_h5py %.2f x goal 3\n", o / h
  printf "RESULT loader_speedup_vs_numpy %.2f x goal 3\n", o / n
  printf "RESULT train_data_wait_share %.4f fraction goal 0.05\n", w
}'
