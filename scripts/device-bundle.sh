#!/usr/bin/env bash
# Builds what runs on a GPU machine that has PyTorch 2.11 (libtorch, CUDA,
# NCCL) and Open MPI but no Rust toolchain, libhdf5 or libcfitsio: stripped
# release builds of `pipeline` and the step benchmark (`step_bench`),
# linked against PyTorch 2.11 like every build here, and the shared
# libraries they load that such a machine lacks. libtorch, the CUDA and MPI
# libraries and the C/C++ runtime stay behind: the GPU machine's own are
# used (its torch/lib on LD_LIBRARY_PATH; scripts/gpu-check.sh sets it).
#
#   scripts/device-bundle.sh [DIR]     # default: bundle/ (ignored by git)
#
# What travels to the GPU machine: DIR.tar.xz (programs and libraries) and
# DIR/data (inputs), e.g. the device tool's carry: ["bundle.tar.xz", "bundle/data"].
#
# Then, here, the bundle is shown to start on the CPU with this machine's
# libtorch: `pipeline --version` and a small quickstart run from DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DIR="${1:-bundle}"
log() { printf '[bundle] %s\n' "$*" >&2; }

bash scripts/setup.sh
# shellcheck disable=SC1091
source .deps/env.sh
export PATH="$HOME/.cargo/bin:$PATH"

log "release build of pipeline and step_bench"
cargo build --release --workspace --bins --example step_bench

# Written beside the final folder and renamed, so a failed run leaves no
# bundle that looks complete.
rm -rf "$DIR.tmp"
mkdir -p "$DIR.tmp/lib"
for bin in target/release/pipeline target/release/examples/step_bench; do
  cp "$bin" "$DIR.tmp/"
  strip --strip-all "$DIR.tmp/$(basename "$bin")"
done

# Every library the binaries load, but for what the GPU machine brings.
keep_behind() {
  case "$1" in
    libtorch*|libc10*|libgomp*|libshm*|libcudart*|libcupti*|libcuda.*|libnv*|libnccl*) return 0 ;;  # PyTorch's own folder
    libmpi*|libopen-*|libpmix*|libprrte*|libevent*|libhwloc*|libucp*|libucs*|libuct*|libucm*|libfabric*|libpsm*|libibverbs*|librdmacm*) return 0 ;;  # Open MPI
    libc.so*|libm.so*|libpthread*|libdl.so*|librt.so*|libresolv*|libutil.so*|libnsl*|libanl*|ld-linux*|libstdc++*|libgcc_s*|linux-vdso*) return 0 ;;  # C/C++ runtime (glibc's parts too)
  esac
  return 1
}
for bin in "$DIR.tmp/pipeline" "$DIR.tmp/step_bench"; do
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }'
done | sort -u | while read -r lib; do
  name="$(basename "$lib")"
  keep_behind "$name" || cp -L "$lib" "$DIR.tmp/lib/$name"
done

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
# The programs and libraries also as one xz archive: what travels to the GPU
# machine (at most 64 MiB go with the tree), unpacked there by gpu-check.sh.
tar -C "$DIR" -cf - pipeline step_bench lib | xz -T0 -6 >"$DIR.tar.xz.tmp"
mv "$DIR.tar.xz.tmp" "$DIR.tar.xz"
log "$(du -sh --exclude=data "$DIR" | cut -f1) of programs and $(ls "$DIR/lib" | wc -l) libraries ($(du -sh "$DIR.tar.xz" | cut -f1) as $DIR.tar.xz) ($(ls "$DIR/lib" | tr '\n' ' ')), $(du -sh "$DIR/data" | cut -f1) of data, in $DIR"

# It starts here, on the CPU, with this machine's libtorch.
export LD_LIBRARY_PATH="$PWD/$DIR/lib:$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$DIR/pipeline" --version
wd="$(mktemp -d)"
"$DIR/pipeline" -q run workflows/quickstart.yaml --set "workdir=$wd" \
  --set params.per_class=200 --set params.epochs=6 --set params.image_size=32
"$PIPELINE_PYTHON" -c 'import json,sys; m=json.load(open(sys.argv[1])); print("bundle quickstart: test accuracy %.3f on %d samples" % (m["accuracy"], m["samples"]))' "$wd/evaluate/metrics.json"
rm -rf "$wd"
