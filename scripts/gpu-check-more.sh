#!/usr/bin/env bash
# The GPU check's second part, for a window after the first
# (scripts/gpu-check.sh, whose sections these are): PyTorch's ResNet-50 step
# in NCHW order for reference, and the training steps of the paper's two
# networks, ours and PyTorch's. Results go to $OUT/results-more.txt.
set -euo pipefail
export ONLY="${ONLY:-env r50_nchw xception wavenet}"
export OUT="${OUT:-${WORK:-/tmp/gpu-check}}"
export RESULTS_NAME="results-more.txt"
exec bash "$(dirname "${BASH_SOURCE[0]}")/gpu-check.sh"
