#!/usr/bin/env bash
# The GPU check: what a GPU machine must show first, in one lent window (at
# most 10 minutes a command, start-up included). Runs from what
# scripts/device-bundle.sh made (bundle/: the release archive users install,
# with the step benchmark, and small inputs), with the machine's own PyTorch
# 2.11 as the archive's libtorch and for the PyTorch side of each comparison.
# The most important figures come first, each section under its own time
# limit, the whole within DEADLINE seconds (default 470: under 8 minutes):
#
#   env         the GPU, the driver, PyTorch                       (cap  20 s)
#   doctor      `pipeline doctor`: libtorch's CUDA half, GPUs seen (cap  30 s)
#   r50_fp32    the ResNet-50 training step (224 px, batch 256,    (cap  90 s)
#               channels-last), ours and PyTorch's, fp32
#   r50_bf16    the same with bf16 autocast                        (cap  90 s)
#   quickstart  workflows/quickstart.yaml with `device: cuda`,     (cap  60 s)
#               EPOCHS epochs (default 2)
#   galaxies    workflows/galaxies.yaml on the 2,600 SDSS cutouts  (cap 120 s)
#               (64 px, carried), EPOCHS epochs, TTA, and its catalogue
#   aigw        the AI-GW regressor on the carried bank, EPOCHS    (cap  60 s)
#               epochs, and its prediction
#
# Every figure is one line `RESULT name value unit`, printed and appended to
# $OUT/results.txt the moment it is known, so a run cut short still returns
# what it measured; a section that fails or runs out of time says so in a
# `SECTION name ...` line there and the next section runs.
# scripts/gpu-check-more.sh runs the second part, for a second window:
#
#   r50_nchw    PyTorch's ResNet-50 step in NCHW order, for reference (90 s)
#   xception    the Xception-style classifier's step (width 16, 64 px,  (90 s)
#               batch 256), ours and PyTorch's
#   wavenet     the AI-GW WaveNet's step (2 x 2,050 samples, batch 512) (90 s)
#
#   scripts/gpu-check.sh
#   ONLY="doctor r50_fp32" scripts/gpu-check.sh     # some sections
#   EPOCHS=40 ONLY=galaxies CAP_galaxies=580 DEADLINE=580 scripts/gpu-check.sh
#
# Settings (environment): PY, TORCH_DIR, BUNDLE, WORK, OUT (default $WORK);
# SCIFLOW, a folder with bin/pipeline and bin/step_bench to use instead of
# the archive; DEVICE (cuda); STEPS, WARMUP (20, 5); EPOCHS (2); R50_ARGS;
# QUICKSTART_SET, GALAXIES_SET (extra `--set` assignments, space-separated);
# AIGW_BATCH (64), XCEPTION_BATCH (256), WAVENET_BATCH (512);
# CAP_<section> (seconds); DEADLINE; ONLY; RESULTS_NAME (results.txt).
# On the device tool: carry ["bundle"], `bash scripts/gpu-check.sh` with a
# timeout_s of 600 (the check stops itself by 470 s). The test suite runs it
# on the CPU with tiny sizes (pipeline/tests/gpu_check.rs), so it cannot rot.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
START=$(date +%s)
PY="${PY:-/opt/torch/.venv/bin/python}"
BUNDLE="${BUNDLE:-bundle}"
WORK="${WORK:-/tmp/gpu-check}"
OUT="${OUT:-$WORK}"
DEV="${DEVICE:-cuda}"
STEPS="${STEPS:-20}"
WARMUP="${WARMUP:-5}"
EPOCHS="${EPOCHS:-2}"
DEADLINE="${DEADLINE:-470}"
ONLY="${ONLY:-env doctor r50_fp32 r50_bf16 quickstart galaxies aigw}"
R50_ARGS="${R50_ARGS:---model resnet50 --size 224 --width 64 --batch 256}"
mkdir -p "$WORK" "$OUT"
RESULTS="$OUT/${RESULTS_NAME:-results.txt}"
: >"$RESULTS"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONUNBUFFERED=1

result() { echo "RESULT $*" | tee -a "$RESULTS"; }
note() { echo "$*" | tee -a "$RESULTS"; }
field() { "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
metric() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d[sys.argv[2]])' "$1" "$2"; }
train_seconds() { "$PY" -c 'import json, sys; print(sum(e["seconds"] for e in json.load(open(sys.argv[1]))["history"]))' "$1"; }
elapsed() { echo $(($(date +%s) - START)); }

# The seconds section $1 may take: its cap, or what is left of DEADLINE.
budget() {
  local cap_var="CAP_$1" left=$((DEADLINE - $(elapsed)))
  local cap="${!cap_var:-$2}"
  ((left < cap)) && cap=$left
  echo "$cap"
}

# Runs section function $1 under a limit of $2 seconds (its default cap),
# in a subshell of its own so a limit ends all it started.
section() {
  local name="$1" cap t0 rc
  [[ " $ONLY " == *" $name "* ]] || return 0
  cap=$(budget "$name" "$2")
  if ((cap <= 0)); then
    note "SECTION $name skipped: the ${DEADLINE} s deadline is reached"
    return 0
  fi
  echo "== $name (at most $cap s; $(elapsed) s in)"
  t0=$(date +%s)
  export -f "sec_$name"
  timeout -k 5 "$cap" bash -c "sec_$name"
  rc=$?
  case $rc in
    0) note "SECTION $name ok in $(($(date +%s) - t0)) s" ;;
    124 | 137) note "SECTION $name timed out after $cap s" ;;
    *) note "SECTION $name failed (exit $rc) after $(($(date +%s) - t0)) s" ;;
  esac
}

# What the sections share, exported to their subshells.
export PY DEV STEPS WARMUP EPOCHS WORK RESULTS R50_ARGS ROOT
export -f result note field metric train_seconds

# The binaries: the release archive, unpacked as a user would (its
# launchers take this machine's libtorch from LIBTORCH), or SCIFLOW.
if [[ -z "${SCIFLOW:-}" ]]; then
  ARCHIVE="$(ls "$BUNDLE"/sciflow-*-x86_64-linux.tar.xz 2>/dev/null | head -1)"
  [[ -n "$ARCHIVE" ]] || { note "SECTION setup failed: no release archive in $BUNDLE/"; exit 1; }
  tar -C "$WORK" -xJf "$ARCHIVE" || { note "SECTION setup failed: $ARCHIVE does not unpack"; exit 1; }
  SCIFLOW="$WORK/$(basename "$ARCHIVE" .tar.xz)"
fi
TORCH_DIR="${TORCH_DIR:-$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')}"
BUNDLE="$(cd "$BUNDLE" && pwd)"
export LIBTORCH="$TORCH_DIR" SCIFLOW BUNDLE
"$SCIFLOW/bin/pipeline" --version || { note "SECTION setup failed: pipeline does not start"; exit 1; }

sec_env() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
}

sec_doctor() {
  local out gpus
  out=$("$SCIFLOW/bin/pipeline" doctor 2>&1)
  echo "$out"
  # "ok  GPUs  1 seen (...)" or "note  GPUs  none seen: ..."
  gpus=$(awk '$2 == "GPUs" { print ($3 == "none" ? 0 : $3); exit }' <<<"$out")
  result doctor_gpus "${gpus:-?}" GPUs
  result doctor_cuda_loaded "$(grep -c 'its CUDA half loaded' <<<"$out")" -
}

# A training step, ours then PyTorch's, one run each: $1 the name, $2 our
# arguments, $3 PyTorch's.
step() {
  local name="$1" out so="" sp=""
  # shellcheck disable=SC2086
  out=$("$SCIFLOW/bin/step_bench" $2 --device "$DEV" --steps "$STEPS" --warmup "$WARMUP") &&
    echo "ours:    $out" && so=$(field "$out" samples_per_second) && result "${name}_ours" "$so" samples/s
  # shellcheck disable=SC2086
  out=$("$PY" "$ROOT/bench/train_step_baseline.py" $3 --device "$DEV" --steps "$STEPS" --warmup "$WARMUP") &&
    echo "pytorch: $out" && sp=$(field "$out" samples_per_second) && result "${name}_pytorch" "$sp" samples/s
  [[ -n "$so" && -n "$sp" ]] || return 1
  result "${name}_ratio" "$(awk "BEGIN{print $so / $sp}")" "x (goal >= 0.95)"
}
export -f step
# Ours runs 2-D networks channels-last on a GPU, as the training stages do;
# so does PyTorch's side here.
sec_r50_fp32() { step resnet50_fp32 "$R50_ARGS" "$R50_ARGS --channels-last"; }
sec_r50_bf16() { step resnet50_bf16 "$R50_ARGS --precision bf16" "$R50_ARGS --precision bf16 --channels-last"; }
# The second part's (scripts/gpu-check-more.sh): PyTorch's ResNet-50 in its
# default memory order, for reference, and the paper's two networks.
sec_r50_nchw() {
  local out
  # shellcheck disable=SC2086
  out=$("$PY" "$ROOT/bench/train_step_baseline.py" $R50_ARGS --device "$DEV" --steps "$STEPS" --warmup "$WARMUP") &&
    echo "pytorch: $out" && result resnet50_fp32_nchw_pytorch "$(field "$out" samples_per_second)" samples/s
}
sec_xception() {
  local x="--model xception_mini --width 16 --size 64 --batch ${XCEPTION_BATCH:-256}"
  step xception "$x" "$x --channels-last"
}
sec_wavenet() {
  local w="--model wavenet --batch ${WAVENET_BATCH:-512}"
  step wavenet "$w" "$w"
}

# `pipeline run` of a workflow, timed, in a fresh workdir (one left from an
# earlier check would make the run a no-op): $1 the name, $2 the workdir,
# then the workflow and its arguments.
timed_run() {
  local name="$1" wd="$2" t0 t1
  shift 2
  rm -rf "$wd"
  t0=$(date +%s.%N)
  "$SCIFLOW/bin/pipeline" run "$@" --set "workdir=$wd" || return 1
  t1=$(date +%s.%N)
  result "${name}_seconds" "$(awk "BEGIN{print $t1 - $t0}")" s
}
# Each word of $1 as a `--set` argument.
sets() { local a; for a in $1; do printf -- '--set\n%s\n' "$a"; done; }
export -f timed_run sets

sec_quickstart() {
  local extra
  mapfile -t extra < <(sets "${QUICKSTART_SET:-}")
  timed_run quickstart "$WORK/quickstart" "$ROOT/workflows/quickstart.yaml" \
    --set "params.device=$DEV" --set "params.epochs=$EPOCHS" "${extra[@]}" || return 1
  result quickstart_train_seconds "$(train_seconds "$WORK/quickstart/train/history.json")" s
  result quickstart_test_accuracy "$(metric "$WORK/quickstart/evaluate/metrics.json" accuracy)" -
}

sec_galaxies() {
  local extra m="$WORK/galaxies"
  [[ -f "$BUNDLE/data/gz1/labels.csv" ]] || { echo "no $BUNDLE/data/gz1: the bundle carries no cutouts"; return 1; }
  mapfile -t extra < <(sets "${GALAXIES_SET:-}")
  # The carried cutouts are already the central half, at 64 px.
  timed_run galaxies "$m" "$ROOT/workflows/galaxies.yaml" \
    --set "params.train_dir=$BUNDLE/data/gz1" --set params.crop=1.0 --set "params.device=$DEV" \
    --set "params.epochs=$EPOCHS" "${extra[@]}" || return 1
  result galaxies_train_seconds "$(train_seconds "$m/train/history.json")" s
  result galaxies_test_accuracy "$(metric "$m/evaluate/metrics.json" accuracy)" -
  result galaxies_test_auc "$(metric "$m/evaluate/metrics.json" auc)" -
  # The second survey, catalogued on the GPU.
  result galaxies_catalogue_inputs_per_second "$(metric "$m/catalogue/catalogue.json" inputs_per_second)" images/s
  result galaxies_catalogue_score_seconds "$(metric "$m/catalogue/catalogue.json" score_seconds)" s
}

sec_aigw() {
  [[ -f "$BUNDLE/data/bank.h5" ]] || { echo "no $BUNDLE/data/bank.h5"; return 1; }
  # The waveforms workflow from its dataset stage on (lalsuite is not on
  # the GPU machine: neither generation nor the overlap runs there).
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
      epochs: $EPOCHS
      batch_size: ${AIGW_BATCH:-64}
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
  timed_run aigw "$WORK/aigw" "$WORK/aigw.yaml" || return 1
  result aigw_train_seconds "$(train_seconds "$WORK/aigw/train/history.json")" s
  local k
  for k in q chi1z chi2z chi_eff; do
    result "aigw_mae_$k" "$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["errors"][sys.argv[2]]["mae"])' \
      "$WORK/aigw/predict/metrics.json" "$k")" -
  done
}
export AIGW_BATCH QUICKSTART_SET GALAXIES_SET XCEPTION_BATCH WAVENET_BATCH

section env 20
section doctor 30
section r50_fp32 90
section r50_bf16 90
section quickstart 60
section galaxies 120
section aigw 60
section r50_nchw 90
section xception 90
section wavenet 90
result gpu_check_seconds "$(elapsed)" s
