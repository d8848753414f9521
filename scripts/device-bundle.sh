#!/usr/bin/env bash
# What travels to a GPU machine for scripts/gpu-check.sh: the release archive
# users install (scripts/release.sh --bench: `pipeline` and the step
# benchmark, with libtorch taken from the GPU machine's PyTorch 2.11) and the
# small inputs that machine can neither make (no lalsuite) nor reach.
#
#   scripts/device-bundle.sh [DIR]     # default: bundle/ (ignored by git)
#   scripts/device-bundle.sh --data-only DIR   # the inputs alone (the CPU
#                                              # dry run of gpu-check.sh)
#
# DIR holds sciflow-<version>-x86_64-linux.tar.xz and data/; the device
# tool's carry is ["bundle"] (at most 64 MiB travel with the tree). BANK_N
# (1000) sets the bank's size, GZ1 the labelled cutouts' folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA_ONLY=0
if [[ "${1:-}" == --data-only ]]; then
  DATA_ONLY=1
  shift
fi
DIR="${1:-bundle}"
log() { printf '[bundle] %s\n' "$*" >&2; }

# Written beside the final folder and renamed, so a failed run leaves no
# bundle that looks complete.
rm -rf "$DIR.tmp"
mkdir -p "$DIR.tmp"
((DATA_ONLY)) || bash scripts/release.sh --bench --out "$DIR.tmp"
# shellcheck disable=SC1091
source .deps/env.sh

# Inputs scripts/gpu-check.sh needs that the GPU machine can neither make
# (lalsuite is not there) nor reach (../shared does not travel), small
# enough to travel with the tree: a bank of BANK_N waveforms (deflated), and
# the SDSS cutouts centre-cropped to half (the galaxies workflow's crop) and
# stored at 64 px (its image size).
mkdir -p "$DIR.tmp/data"
log "generating a bank of ${BANK_N:=1000} waveforms"
"$PIPELINE_PYTHON" data/make_bank.py --n "$BANK_N" --seed 7 --out "$DIR.tmp/data/bank-raw.h5" >/dev/null
"$PIPELINE_PYTHON" - "$DIR.tmp/data/bank-raw.h5" "$DIR.tmp/data/bank.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1]) as f, h5py.File(sys.argv[2], "w") as g:
    g.attrs.update(f.attrs)
    for name in f:
        g.create_dataset(name, data=f[name][()], compression="gzip", compression_opts=9, shuffle=True)
PY
rm "$DIR.tmp/data/bank-raw.h5"
GZ1="${GZ1:-../shared/data/gz1}"
if [[ -f "$GZ1/labels.csv" ]]; then
  log "cutting $GZ1 to 64 px"
  "$PIPELINE_PYTHON" - "$GZ1" "$DIR.tmp/data/gz1" <<'PY'
import csv, os, sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(dst, "images"), exist_ok=True)
with open(os.path.join(src, "labels.csv")) as f:
    rows = list(csv.DictReader(f))
for r in rows:
    im = Image.open(os.path.join(src, r["image"]))
    w, h = im.size
    box = (w // 4, h // 4, w - w // 4, h - h // 4)
    im.crop(box).resize((64, 64), Image.LANCZOS).save(os.path.join(dst, r["image"]), quality=95)
with open(os.path.join(dst, "labels.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=rows[0].keys())
    w.writeheader()
    w.writerows(rows)
PY
else
  log "no $GZ1: the bundle carries no SDSS cutouts (gpu-check skips the galaxies workflow)"
fi

rm -rf "$DIR"
mv "$DIR.tmp" "$DIR"
log "$(du -sh "$DIR" | cut -f1) in $DIR: $(ls "$DIR" | tr '\n' ' ')"
