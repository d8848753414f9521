#!/usr/bin/env bash
# The GPU check: run on a GPU machine from what scripts/device-bundle.sh made
# (bundle/: the release archive users install, with the step benchmark, and
# small inputs), with the machine's own PyTorch 2.11 as the archive's libtorch
# and for the PyTorch side of each comparison. In one go:
#
#   1. the ResNet-50 training step (224 px, batch 256), ours and PyTorch's,
#      in fp32 and with bf16 autocast, both channels-last;
#   2. the paper's two networks, ours and PyTorch's: the Xception-style
#      galaxy classifier (width 16, 64 px, batch 256) and the AI-GW WaveNet
#      (2 x 2,050 samples, stride 8, batch 512);
#   3. workflows/quickstart.yaml and workflows/galaxies.yaml end to end with
#      `device: cuda` (galaxies on the 2,600 SDSS cutouts, centre-cropped to
#      half and stored at 64 px by device-bundle.sh so they travel), and the
#      AI-GW training and prediction on the bank device-bundle.sh generated
#      (lalsuite is not on the GPU machine, so neither generation nor the
#      overlap, which regenerates waveforms, runs there).
#
# Every figure ends as one line `RESULT name value unit`.
#
#   scripts/gpu-check.sh            # TORCH_DIR, PY, BUNDLE, WORK override the defaults
#   DEVICE=cpu STEPS=0 EPOCHS=1 scripts/gpu-check.sh   # a dry run on a CPU
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PY:-/opt/torch/.venv/bin/python}"
TORCH_DIR="${TORCH_DIR:-$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')}"
BUNDLE="${BUNDLE:-bundle}"
WORK="${WORK:-/tmp/gpu-check}"
DEV="${DEVICE:-cuda}"
# EPOCHS shortens the workflows (a dry run); unset, each keeps its own.
EP=(); [[ -n "${EPOCHS:-}" ]] && EP=(--set "params.epochs=$EPOCHS")
mkdir -p "$WORK"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
field() { "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
result() { echo "RESULT $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
# The release archive, unpacked as a user would; its launchers take this
# machine's libtorch from LIBTORCH.
ARCHIVE="$(ls "$BUNDLE"/sciflow-*-x86_64-linux.tar.xz 2>/dev/null | head -1)"
[[ -n "$ARCHIVE" ]] || { echo "no release archive in $BUNDLE/"; exit 1; }
tar -C "$WORK" -xJf "$ARCHIVE"
SCIFLOW="$WORK/$(basename "$ARCHIVE" .tar.xz)"
BUNDLE="$(cd "$BUNDLE" && pwd)"
export LIBTORCH="$TORCH_DIR"
"$SCIFLOW/bin/pipeline" --version || { echo "the archive does not start"; exit 1; }
"$SCIFLOW/bin/pipeline" doctor || true

# 1-2. Training steps, ours and PyTorch's, alternating, best of two each.
step() { # name, our args, PyTorch args
  local name="$1" o="$2" p="$3" best_o="" best_p="" so sp out
  for _ in 1 2; do
    # shellcheck disable=SC2086
    out=$("$SCIFLOW/bin/step_bench" $o --device "$DEV" --steps 30 --warmup 5) && echo "ours:    $out" &&
      so=$(field "$out" samples_per_second) && best_o=$(awk "BEGIN{b=\"$best_o\"; print (b == \"\" || $so > b) ? $so : b}")
    # shellcheck disable=SC2086
    out=$("$PY" bench/train_step_baseline.py $p --device "$DEV" --steps 30 --warmup 5) && echo "pytorch: $out" &&
      sp=$(field "$out" samples_per_second) && best_p=$(awk "BEGIN{b=\"$best_p\"; print (b == \"\" || $sp > b) ? $sp : b}")
  done
  [[ -n "$best_o" ]] && result "${name}_ours" "$best_o" samples/s
  [[ -n "$best_p" ]] && result "${name}_pytorch" "$best_p" samples/s
  [[ -n "$best_o" && -n "$best_p" ]] && result "${name}_ratio" "$(awk "BEGIN{print $best_o / $best_p}")" "x (goal >= 0.95)"
}
r50="--model resnet50 --size 224 --width 64 --batch 256"
if [[ "${STEPS:-1}" != 0 ]]; then
# Ours runs 2-D networks channels-last on a GPU, as the training stages do;
# so does PyTorch's side here.
step resnet50_fp32 "$r50" "$r50 --channels-last"
step resnet50_bf16 "$r50 --precision bf16" "$r50 --precision bf16 --channels-last"
# PyTorch's ResNet-50 in its default memory order, for reference.
out=$("$PY" bench/train_step_baseline.py $r50 --device "$DEV" --steps 30 --warmup 5) &&
  echo "pytorch: $out" && result resnet50_fp32_nchw_pytorch "$(field "$out" samples_per_second)" samples/s
x16="--model xception_mini --width 16 --size 64 --batch 256"
step xception_b256 "$x16" "$x16 --channels-last"
step wavenet_b512 "--model wavenet --batch 512" "--model wavenet --batch 512"
fi

# 3. Workflows on the GPU.
timed_run() { # name, then pipeline arguments; prints the run's seconds
  local name="$1" t0 t1; shift
  t0=$(date +%s.%N)
  "$SCIFLOW/bin/pipeline" run "$@" || { echo "$name failed"; return 1; }
  t1=$(date +%s.%N)
  result "${name}_seconds" "$(awk "BEGIN{print $t1 - $t0}")" s
}
metric() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d[sys.argv[2]])' "$1" "$2"; }
train_seconds() { "$PY" -c 'import json, sys; print(sum(e["seconds"] for e in json.load(open(sys.argv[1]))["history"]))' "$1"; }

if timed_run quickstart workflows/quickstart.yaml --set "workdir=$WORK/quickstart" --set "params.device=$DEV" "${EP[@]}"; then
  result quickstart_train_seconds "$(train_seconds "$WORK/quickstart/train/history.json")" s
  result quickstart_test_accuracy "$(metric "$WORK/quickstart/evaluate/metrics.json" accuracy)" -
fi
if [[ -d "$BUNDLE/data/gz1" ]] && timed_run galaxies workflows/galaxies.yaml --set "workdir=$WORK/galaxies" \
    --set "params.train_dir=$BUNDLE/data/gz1" --set params.crop=1.0 --set "params.device=$DEV" "${EP[@]}"; then
  result galaxies_train_seconds "$(train_seconds "$WORK/galaxies/train/history.json")" s
  result galaxies_test_accuracy "$(metric "$WORK/galaxies/evaluate/metrics.json" accuracy)" -
  result galaxies_test_auc "$(metric "$WORK/galaxies/evaluate/metrics.json" auc)" -
  # The workflow's catalogue of the second survey, scored on the GPU.
  result galaxies_catalogue_inputs_per_second "$(metric "$WORK/galaxies/catalogue/catalogue.json" inputs_per_second)" images/s
  result galaxies_catalogue_score_seconds "$(metric "$WORK/galaxies/catalogue/catalogue.json" score_seconds)" s
fi
if [[ -f "$BUNDLE/data/bank.h5" ]]; then
  # The waveforms workflow from its dataset stage on, on the carried bank.
  cat >"$WORK/aigw.yaml" <<YAML
version: 1
name: aigw-gpu
workdir: $WORK/aigw
seed: 7
stages:
  dataset:
    uses: ingest.waveforms
    with: { inputs: ["$BUNDLE/data/bank.h5"], dt: 2.0, window: [-4000, 100], split: { val: 0.1, test: 0.1 }, shard_size: 512 }
  train:
    uses: train.regressor
    with:
      data: \${dataset.dataset}
      model: { channels: 32, skip_channels: 64, layers: 8, stacks: 2, input_stride: 4 }
      epochs: ${EPOCHS:-16}
      batch_size: 64
      lr: 0.001
      lr_schedule: { kind: cosine }
      constraint_weight: 1.0
      device: $DEV
  predict:
    uses: eval.regressor
    with:
      model: \${train.model}
      data: \${dataset.dataset}
      split: test
      device: $DEV
YAML
  if timed_run aigw "$WORK/aigw.yaml"; then
    result aigw_train_seconds "$(train_seconds "$WORK/aigw/train/history.json")" s
    "$PY" -c 'import json, sys; e = json.load(open(sys.argv[1]))["errors"]; [print("RESULT aigw_mae_%s %s -" % (k, e[k]["mae"])) for k in ("q", "chi1z", "chi2z", "chi_eff")]' "$WORK/aigw/predict/metrics.json"
  fi
fi
