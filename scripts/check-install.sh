#!/usr/bin/env bash
# Proves the two ways in as a user meets them: a fresh minimal Debian root
# file system (debootstrap) with only a C/C++ compiler, make, CMake, Python
# with venv, git and Open MPI — no HDF5, no cfitsio, no clang, no nasm, no
# sudo — and a non-root user with a Rust toolchain in their home, as rustup
# puts it. As that user, inside the chroot:
#
#   part a  from a clean clone: scripts/setup.sh, then scripts/quickstart.sh
#   part b  the release archive (scripts/release.sh), unpacked in the home
#           directory, with torch==2.11.0 pip-installed into a venv: `pipeline
#           doctor`, then workflows/quickstart.yaml at 1 rank and under
#           `mpirun -n 2`
#
# Each part ends with `RESULT check_install_<part>_seconds N s` and the
# quickstart's test accuracy. Runs as root (debootstrap, chroot, mounts).
#
#   scripts/check-install.sh [a|b|all] [--profile release|dev] [--keep]
#
#   --profile dev   part b packages the dev build (release.sh --profile dev;
#                   what CI does, to skip a second, release build)
#   --keep          leave the root file system (CHECK_DIR) for a look inside
#
# CHECK_DIR (default /var/tmp/sciflow-check) holds the root file system; it
# is made afresh on every run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
PARTS=all PROFILE=release KEEP=0
while (($#)); do
  case "$1" in
    a|b|all) PARTS="$1" ;;
    --profile) PROFILE="$2"; shift ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $(id -u) -eq 0 ]] || { echo "check-install.sh runs as root (debootstrap and chroot)" >&2; exit 1; }
log() { printf '[check-install] %s\n' "$*" >&2; }
CHECK_DIR="${CHECK_DIR:-/var/tmp/sciflow-check}"
R="$CHECK_DIR/rootfs"
U=scientist
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What a cluster's login node offers after `module load gcc cmake python openmpi`.
PACKAGES=gcc,g++,make,cmake,python3,python3-venv,libopenmpi-dev,openmpi-bin,git,ca-certificates,xz-utils,procps

umount_all() {
  for m in dev sys proc; do mountpoint -q "$R/$m" && umount -R -l "$R/$m"; done
  return 0
}
cleanup() {
  umount_all
  ((KEEP)) || rm -rf "$CHECK_DIR"
}
trap cleanup EXIT

command -v debootstrap >/dev/null || {
  log "installing debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

# Part b's archive first, from this checkout (its own build), so the chroot's
# clock measures only what the user does.
if [[ "$PARTS" != a ]]; then
  log "building the release archive ($PROFILE)"
  ARCHIVE_LINE="$(bash "$ROOT/scripts/release.sh" --profile "$PROFILE" --out "$CHECK_DIR/dist" | tail -1)"
  ARCHIVE="${ARCHIVE_LINE%% *}"
  log "archive: $ARCHIVE_LINE"
fi

umount_all
rm -rf "$R"
mkdir -p "$R"
t0=$(date +%s)
log "debootstrap bookworm into $R"
# The base system by debootstrap, the rest by the chroot's own apt, which
# resolves virtual packages (Open MPI's -dev needs one) where debootstrap
# does not.
debootstrap --variant=minbase bookworm "$R" "$MIRROR" >"$CHECK_DIR/debootstrap.log" 2>&1 ||
  { tail -20 "$CHECK_DIR/debootstrap.log"; exit 1; }
cp /etc/resolv.conf "$R/etc/resolv.conf"
{ chroot "$R" apt-get update -qq && DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -qq \
    --no-install-recommends ${PACKAGES//,/ } && chroot "$R" apt-get clean; } >>"$CHECK_DIR/debootstrap.log" 2>&1 ||
  { tail -20 "$CHECK_DIR/debootstrap.log"; exit 1; }
log "root file system in $(($(date +%s) - t0)) s"
for absent in libhdf5-dev libcfitsio-dev clang libclang-dev sudo nasm yasm; do
  if chroot "$R" dpkg-query -W -f='${Status}' "$absent" 2>/dev/null | grep -q "ok installed"; then
    log "the root file system has $absent, which it must not"; exit 1
  fi
done
# This machine's certificate store and pip settings: PyPI and crates.io are
# reached the way this machine reaches them.
cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
[[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$R/etc/pip.conf"
# What Open MPI and Python need of a running system.
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys" && mount --make-rslave "$R/sys"
mount --rbind /dev "$R/dev" && mount --make-rslave "$R/dev"

chroot "$R" useradd --create-home --shell /bin/bash "$U"
H="$R/home/$U"
# Rust as rustup installs it: the toolchain under ~/.rustup, proxies in ~/.cargo/bin.
RUSTUP_SRC="${RUSTUP_HOME:-$HOME/.rustup}"
TOOLCHAIN="$(rustup show active-toolchain 2>/dev/null | awk '{print $1}')"
mkdir -p "$H/.rustup/toolchains" "$H/.cargo/bin"
cp -a "$RUSTUP_SRC/toolchains/$TOOLCHAIN" "$H/.rustup/toolchains/"
printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "default"\n' "$TOOLCHAIN" >"$H/.rustup/settings.toml"
cp "$(command -v rustup)" "$H/.cargo/bin/rustup"
for tool in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do ln -sf rustup "$H/.cargo/bin/$tool"; done
# A bare clone of this checkout's committed state, as the user would clone it.
git clone -q --bare --no-local "$ROOT" "$H/sciflow.git"
[[ -n "${ARCHIVE:-}" ]] && cp "$ARCHIVE" "$H/"
chroot "$R" chown -R "$U:$U" "/home/$U"

as_user() { chroot "$R" /bin/su - "$U" -c "set -euo pipefail; $1"; }
accuracy() { as_user "python3 -c 'import json; m = json.load(open(\"$1/evaluate/metrics.json\")); print(\"%.3f\" % m[\"accuracy\"])'"; }
status=0

if [[ "$PARTS" != b ]]; then
  log "part a: clone, scripts/setup.sh, scripts/quickstart.sh as $U"
  t0=$(date +%s)
  if as_user 'git clone -q ~/sciflow.git ~/sciflow && cd ~/sciflow && bash scripts/setup.sh && bash scripts/quickstart.sh --set workdir=$HOME/quickstart-a'; then
    echo "RESULT check_install_a_seconds $(($(date +%s) - t0)) s"
    echo "RESULT check_install_a_accuracy $(accuracy "/home/$U/quickstart-a") -"
  else
    log "part a failed"; status=1
  fi
fi

if [[ "$PARTS" != a ]]; then
  log "part b: the archive with pip's torch, as $U"
  t0=$(date +%s)
  name="$(basename "$ARCHIVE" .tar.xz)"
  # The CPU-only install setup.sh makes: PyPI's torch without the multi-GB
  # CUDA stack, plus the two small CUDA runtime wheels libtorch_cpu.so links.
  wheels="torch==2.11.0 $(sed -n 's/^CUDA_RUNTIME_WHEELS=(\(.*\))$/\1/p' "$ROOT/scripts/setup.sh" | tr -d '"')"
  if as_user "python3 -m venv ~/torch && ~/torch/bin/pip install -q --disable-pip-version-check --no-deps $wheels &&
      tar -xJf ~/$name.tar.xz && source ~/torch/bin/activate && cd ~/$name &&
      bin/pipeline --version && bin/pipeline doctor workflows/quickstart.yaml &&
      bin/pipeline run workflows/quickstart.yaml --set workdir=\$HOME/quickstart-b1 &&
      mpirun -n 2 bin/pipeline run workflows/quickstart.yaml --set workdir=\$HOME/quickstart-b2"; then
    echo "RESULT check_install_b_seconds $(($(date +%s) - t0)) s"
    echo "RESULT check_install_b_accuracy_1rank $(accuracy "/home/$U/quickstart-b1") -"
    echo "RESULT check_install_b_accuracy_2ranks $(accuracy "/home/$U/quickstart-b2") -"
  else
    log "part b failed"; status=1
  fi
fi
exit "$status"
