#!/bin/sh
# sciflow's launcher (bin/@PROGRAM@ in the release archive; scripts/release.sh
# writes it). It finds libtorch 2.11 and runs libexec/@PROGRAM@ with it:
#   1. $LIBTORCH, a libtorch folder (the one with lib/libtorch_cpu.so), or
#   2. the torch package of $SCIFLOW_PYTHON, else of the python3 on PATH
#      (`pip install torch==2.11.*` into the venv you activate), found without
#      importing it.
# The archive's lib/ comes first on the library path, then libtorch's lib/.
# MPI is the machine's Open MPI (`module load openmpi`).
here=$(CDPATH='' cd -- "$(dirname -- "$(readlink -f -- "$0")")" && pwd)
root=${here%/bin}
if [ -z "${LIBTORCH:-}" ]; then
  py=${SCIFLOW_PYTHON:-python3}
  LIBTORCH=$("$py" -c 'import importlib.util, os
s = importlib.util.find_spec("torch")
print(os.path.dirname(s.origin) if s and s.origin else "")' 2>/dev/null) || LIBTORCH=""
  if [ -z "$LIBTORCH" ]; then
    echo "sciflow: no libtorch found: set LIBTORCH to a libtorch 2.11 folder, or activate a Python" >&2
    echo "  environment with torch 2.11 (python3 -m venv ~/torch && ~/torch/bin/pip install torch==2.11.0)" >&2
    exit 127
  fi
fi
if [ ! -f "$LIBTORCH/lib/libtorch_cpu.so" ]; then
  echo "sciflow: $LIBTORCH/lib/libtorch_cpu.so does not exist (LIBTORCH must be a libtorch folder)" >&2
  exit 127
fi
# A torch package says its version in version.py, a libtorch zip in build-version.
version=$(sed -n "s/^__version__ = '\([^']*\)'.*/\1/p" "$LIBTORCH/version.py" 2>/dev/null)
[ -n "$version" ] || version=$(cat "$LIBTORCH/build-version" 2>/dev/null)
case "$version" in
  2.11.*|"") ;;
  *) echo "sciflow: this build needs libtorch 2.11, and $LIBTORCH is $version" >&2; exit 127 ;;
esac
LD_LIBRARY_PATH="$root/lib:$LIBTORCH/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Job scripts and sub-workflows start this launcher again, not the bare binary.
SCIFLOW_LAUNCHER="$here/@PROGRAM@"
export LD_LIBRARY_PATH LIBTORCH SCIFLOW_LAUNCHER
exec "$root/libexec/@PROGRAM@" "$@"
