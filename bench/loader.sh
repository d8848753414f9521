#!/usr/bin/env bash
# P1, the loader: samples/s of our loader (train/examples/loader_bench.rs:
# shuffled shards read whole, 2 reader threads, a 1,024-sample shuffle
# buffer, prefetch 4, batches handed to libtorch) against PyTorch's
# DataLoader (2 persistent workers, same batch; bench/loader_baseline.py)
# reading the same samples four ways: one sample an item from HDF5 (h5py)
# and from a numpy memmap, fully shuffled; a whole batch an item from the
# memmap (one sorted fancy-indexed read), fully shuffled; and our access
# pattern (shuffled runs of 64 contiguous samples through the same shuffle
# buffer). The headline is against the fastest of them. ROUNDS (5) rounds, the
# sides in a new random order each round, the page cache warm; then, for
# ours and the two memmap readers that read as a batch, one epoch with the
# cache dropped before every run (cold; needs root). Goal:
# >= 3x. Then the share of a real training epoch (`train.classifier`,
# small_cnn) spent waiting for data, from its history.json. Goal: < 5 %.
# Ends with one line per figure: RESULT <name> <median> <unit> goal <goal>
# min <min> max <max>; a ratio's median and range are over the rounds'.
#
#   bench/loader.sh [SAMPLES] [SIZE]     # default 4096 images of 3 x 96 x 96
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N="${1:-4096}"
SIZE="${2:-96}"
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
ROUNDS="${ROUNDS:-5}"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q --workspace --bins
cargo build -q --example loader_bench -p sciflow-train
W="$(mktemp -d /tmp/sciflow-loader-bench.XXXXXX)"
trap 'rm -rf "$W"' EXIT
SAMPLES="$W/samples"

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

field() { "$PIPELINE_PYTHON" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
COLD=0
# Each side prints its samples/s: the median of EPOCHS epochs (3 warm; 1
# cold, since the first epoch fills the page cache for the next ones).
EPOCHS=3
ours() {
  page_cache "$W"/wd/data/shards/* "$W"/py/*
  field "$(target/debug/examples/loader_bench "$W/wd/data" --batch 64 --workers 2 --prefetch 4 --epochs "$EPOCHS" 2>/dev/null)" samples_per_second
}
pytorch() {
  page_cache "$W"/wd/data/shards/* "$W"/py/*
  field "$("$PIPELINE_PYTHON" bench/loader_baseline.py run "$W/py" --format "$1" --batch 64 --workers 2 --epochs "$EPOCHS")" samples_per_second
}
h5() { pytorch h5; }
npy() { pytorch npy; }
npy_batch() { pytorch npy_batch; }
npy_shard() { pytorch npy_shard; }
SIDES=(ours h5 npy npy_batch npy_shard)
interleave "$ROUNDS" "${SIDES[@]}"
for s in "${SIDES[@]}"; do
  summary "$s" | result_line "loader_$s" samples/s - %.0f
done
for s in "${SIDES[@]:1}"; do
  goal=-
  # The goal holds against PyTorch's fastest way here (a batch an item).
  [[ $s == npy_batch ]] && goal=3
  ratio_summary ours "$s" | result_line "loader_speedup_vs_$s" x "$goal" %.2f
done
if [[ -w /proc/sys/vm/drop_caches ]]; then
  COLD=1 EPOCHS=1
  SAMPLES="$W/cold"
  interleave "$ROUNDS" ours npy_batch npy_shard
  summary ours | result_line loader_cold_ours samples/s - %.0f
  summary npy_batch | result_line loader_cold_npy_batch samples/s - %.0f
  summary npy_shard | result_line loader_cold_npy_shard samples/s - %.0f
  ratio_summary ours npy_batch | result_line loader_cold_speedup_vs_npy_batch x 3 %.2f
  ratio_summary ours npy_shard | result_line loader_cold_speedup_vs_npy_shard x - %.2f
  COLD=0 EPOCHS=3
else
  echo "cold-cache runs skipped: dropping the page cache needs root" >&2
fi

target/debug/pipeline -q run "$W/loader.yaml" --only train
"$PIPELINE_PYTHON" -c "
import json, sys
h = json.load(open(sys.argv[1]))['history']
print('RESULT train_data_wait_share %.4f fraction goal 0.05' % (sum(e['data_wait_seconds'] for e in h) / sum(e['seconds'] for e in h)))" "$W/wd/train/history.json"
