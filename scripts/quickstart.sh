#!/usr/bin/env bash
# The main job: set-up (idempotent), build, then `pipeline run workflows/quickstart.yaml`.
# Extra arguments go to `pipeline run` (e.g. --set params.epochs=10).
# Under MPI: scripts/quickstart.sh builds; then `mpirun -n 2 target/debug/pipeline run ...`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
source .deps/env.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -p sciflow-pipeline --bin pipeline
exec target/debug/pipeline run workflows/quickstart.yaml "$@"
