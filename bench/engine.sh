#!/usr/bin/env bash
# Engine benchmarks, our `pipeline` and Snakemake side by side on the same machine:
#   1. per-stage overhead on a chain of 1,000 stages that each touch one file;
#   2. `pipeline plan` on a generated 100,000-stage workflow;
#   3. a no-op rerun over 10 GB of inputs (sparse files: the first run hashes
#      them all, a rerun must not read them again);
#   4. start-up (`--version`);
#   5. 200 independent 0.5 s stages at -j 2 against -j 1 (Snakemake: --cores 2
#      against --cores 1), and what -j costs per stage.
# Ends with one line per figure: RESULT <name> <value> <unit> goal <goal>.
#
#   bench/engine.sh            # about 5 minutes on 2 cores, 10 GB of (sparse) disk
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The whole workspace, as the tests build it (one package alone would
# rebuild its dependencies under other features).
cargo build -q --workspace
BIN="$PWD/target/debug/pipeline"
VENV=.deps/bench-venv
if [[ ! -x $VENV/bin/snakemake ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check snakemake
fi
SNAKEMAKE="$PWD/$VENV/bin/snakemake"
W="$(mktemp -d /tmp/sciflow-bench.XXXXXX)"
trap 'rm -rf "$W"' EXIT
N=${CHAIN:-1000}
BIG=${PLAN_STAGES:-100000}

python3 - "$W" "$N" "$BIG" <<'PY'
import sys, os
w, n, big = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{w}/ours", exist_ok=True); os.makedirs(f"{w}/snake", exist_ok=True)
with open(f"{w}/ours/chain.yaml", "w") as f:
    f.write("version: 1\nname: chain\nworkdir: wd\nstages:\n")
    for i in range(n):
        f.write(f"  s{i}:\n    uses: command\n    with:\n      argv: [touch, '{{out}}/done']\n")
        if i:
            f.write(f"    needs: [s{i-1}]\n")
with open(f"{w}/snake/Snakefile", "w") as f:
    f.write(f"rule all:\n    input: 'out/s{n-1}'\n\n")
    for i in range(n):
        dep = f"    input: 'out/s{i-1}'\n" if i else ""
        f.write(f"rule s{i}:\n{dep}    output: 'out/s{i}'\n    shell: 'touch {{output}}'\n\n")
# The same number of stages as 10 chains of n/10, a depth Snakemake's DAG builder handles.
chains, depth = 10, n // 10
with open(f"{w}/ours/forest.yaml", "w") as f:
    f.write("version: 1\nname: forest\nworkdir: wdf\nstages:\n")
    for c in range(chains):
        for i in range(depth):
            f.write(f"  c{c}s{i}:\n    uses: command\n    with:\n      argv: [touch, '{{out}}/done']\n")
            if i:
                f.write(f"    needs: [c{c}s{i-1}]\n")
with open(f"{w}/snake/Snakefile.forest", "w") as f:
    f.write("rule all:\n    input: [" + ", ".join(f"'fo/c{c}s{depth-1}'" for c in range(chains)) + "]\n\n")
    for c in range(chains):
        for i in range(depth):
            dep = f"    input: 'fo/c{c}s{i-1}'\n" if i else ""
            f.write(f"rule c{c}s{i}:\n{dep}    output: 'fo/c{c}s{i}'\n    shell: 'touch {{output}}'\n\n")
with open(f"{w}/ours/big.yaml", "w") as f:
    f.write("version: 1\nname: big\nworkdir: wdbig\nparams: { n: 3 }\nstages:\n")
    for i in range(big):
        f.write(f"  s{i}:\n    uses: command\n    with:\n      argv: [sh, -c, 'echo ${{params.n}}']\n")
        if i:
            f.write(f"    needs: [s{i-1}{', s%d' % (i // 2) if i > 2 else ''}]\n")
os.makedirs(f"{w}/big", exist_ok=True)
par = int(os.environ.get("PARALLEL", "200"))
with open(f"{w}/ours/par.yaml", "w") as f:
    f.write("version: 1\nname: par\nworkdir: wdpar\nstages:\n")
    for i in range(par):
        f.write(f"  p{i}:\n    uses: command\n    with:\n      argv: [sh, -c, 'sleep 0.5; touch {{out}}/done']\n")
with open(f"{w}/snake/Snakefile.par", "w") as f:
    f.write("rule all:\n    input: [" + ", ".join(f"'par/p{i}'" for i in range(par)) + "]\n\n")
    for i in range(par):
        f.write(f"rule p{i}:\n    output: 'par/p{i}'\n    shell: 'sleep 0.5; touch {{output}}'\n\n")
with open(f"{w}/ours/bigdata.yaml", "w") as f:
    files = ", ".join(f"'{w}/big/part{i}.bin'" for i in range(10))
    f.write(f"version: 1\nname: bigdata\nworkdir: wddata\nstages:\n  s:\n    uses: command\n    with:\n      argv: [touch, '{{out}}/done']\n      inputs: [{files}]\n")
PY
for i in $(seq 0 9); do truncate -s 1G "$W/big/part$i.bin"; done

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }

echo "== 1. chain of $N stages"
cd "$W/ours"
t0=$(now); "$BIN" -q run chain.yaml; t1=$(now)
ours=$(elapsed "$t0" "$t1")
t0=$(now); "$BIN" -q run chain.yaml; t1=$(now)
ours_noop=$(elapsed "$t0" "$t1")
cd "$W/snake"
if "$SNAKEMAKE" --cores 1 --quiet all >snake-chain.log 2>&1; then snake_chain=ok; else
  snake_chain="failed: $(grep -m1 -o 'RecursionError: [a-z ]*' snake-chain.log || echo "exit status $?")"; fi
echo "ours: ${ours} s (no-op rerun ${ours_noop} s); snakemake on the same chain: ${snake_chain}"

echo "== 1a. baseline: the stages' own work, $N x touch from a Python loop"
baseline=$(python3 - "$W/baseline" "$N" <<'PY'
import os, subprocess, sys, time
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
t = time.time()
for i in range(n):
    subprocess.run(["touch", f"{d}/f{i}"], check=True)
print(f"{time.time() - t:.3f}")
PY
)
echo "baseline: ${baseline} s"

echo "== 1b. $N stages as 10 chains of $((N / 10)), both tools"
cd "$W/ours"
t0=$(now); "$BIN" -q run forest.yaml -j 1; t1=$(now)
forest=$(elapsed "$t0" "$t1")
t0=$(now); "$BIN" -q run forest.yaml -j 1; t1=$(now)
forest_noop=$(elapsed "$t0" "$t1")
cd "$W/snake"
t0=$(now); "$SNAKEMAKE" -s Snakefile.forest --cores 1 --quiet all >/dev/null 2>&1; t1=$(now)
snake=$(elapsed "$t0" "$t1")
t0=$(now); "$SNAKEMAKE" -s Snakefile.forest --cores 1 --quiet all >/dev/null 2>&1; t1=$(now)
snake_noop=$(elapsed "$t0" "$t1")
echo "ours: ${forest} s (no-op rerun ${forest_noop} s); snakemake: ${snake} s (no-op rerun ${snake_noop} s)"

echo "== 2. plan on $BIG stages"
cd "$W/ours"
t0=$(now); "$BIN" -q plan big.yaml >/dev/null; t1=$(now)
plan=$(elapsed "$t0" "$t1")
echo "plan: ${plan} s"

echo "== 3. no-op rerun over 10 GB of inputs"
t0=$(now); "$BIN" -q run bigdata.yaml; t1=$(now)
first=$(elapsed "$t0" "$t1")
t0=$(now); "$BIN" -q run bigdata.yaml; t1=$(now)
rerun=$(elapsed "$t0" "$t1")
echo "first run (hashes 10 GB): ${first} s; rerun: ${rerun} s"

echo "== 4. start-up"
t0=$(now); for _ in $(seq 20); do "$BIN" --version >/dev/null; done; t1=$(now)
startup=$(python3 -c "print(f'{($t1 - $t0) / 20 * 1000:.1f}')")
t0=$(now); for _ in $(seq 3); do "$SNAKEMAKE" --version >/dev/null; done; t1=$(now)
snake_startup=$(python3 -c "print(f'{($t1 - $t0) / 3 * 1000:.1f}')")
echo "pipeline --version: ${startup} ms; snakemake --version: ${snake_startup} ms"

PAR=${PARALLEL:-200}
echo "== 5. $PAR independent 0.5 s stages, one core and two"
cd "$W/ours"
t0=$(now); "$BIN" -q run par.yaml -j 1; t1=$(now)
par1=$(elapsed "$t0" "$t1")
rm -rf wdpar
t0=$(now); "$BIN" -q run par.yaml -j 2; t1=$(now)
par2=$(elapsed "$t0" "$t1")
cd "$W/snake"
t0=$(now); "$SNAKEMAKE" -s Snakefile.par --cores 1 --quiet all >/dev/null 2>&1; t1=$(now)
spar1=$(elapsed "$t0" "$t1")
rm -rf par .snakemake
t0=$(now); "$SNAKEMAKE" -s Snakefile.par --cores 2 --quiet all >/dev/null 2>&1; t1=$(now)
spar2=$(elapsed "$t0" "$t1")
echo "ours: -j 1 ${par1} s, -j 2 ${par2} s; snakemake: --cores 1 ${spar1} s, --cores 2 ${spar2} s"

python3 - <<PY
n = $N
ours, snake = $ours, $snake
print(f"# snakemake on the {n}-deep chain: $snake_chain")
print(f"RESULT chain_per_stage_ours {ours / n * 1000:.2f} ms goal -")
print(f"RESULT touch_spawn_baseline_per_stage {$baseline / n * 1000:.2f} ms goal -")
print(f"RESULT engine_overhead_per_stage {(ours - $baseline) / n * 1000:.2f} ms goal 2")
print(f"RESULT chain_noop_rerun_ours {$ours_noop:.3f} s goal -")
print(f"RESULT forest_per_stage_ours {$forest / n * 1000:.2f} ms goal 2")
print(f"RESULT forest_per_stage_snakemake {snake / n * 1000:.2f} ms goal -")
print(f"RESULT forest_speedup_vs_snakemake {snake / $forest:.1f} x goal -")
print(f"RESULT forest_noop_rerun_ours {$forest_noop:.3f} s goal -")
print(f"RESULT forest_noop_rerun_snakemake {$snake_noop:.3f} s goal -")
print(f"RESULT plan_{$BIG}_stages {$plan:.2f} s goal 2")
print(f"RESULT noop_rerun_10GB {$rerun:.3f} s goal 1")
print(f"RESULT first_run_10GB_hashing {$first:.2f} s goal -")
print(f"RESULT startup_version {$startup} ms goal -")
print(f"RESULT startup_snakemake_version {$snake_startup} ms goal -")
par = $PAR
print(f"RESULT parallel_j1_ours {$par1:.2f} s goal -")
print(f"RESULT parallel_j2_ours {$par2:.2f} s goal -")
print(f"RESULT parallel_speedup_j2_ours {$par1 / $par2:.2f} x goal 2")
print(f"RESULT parallel_overhead_per_stage_j2_ours {($par2 - par * 0.5 / 2) / par * 1000:.1f} ms goal -")
print(f"RESULT parallel_speedup_cores2_snakemake {$spar1 / $spar2:.2f} x goal -")
print(f"RESULT parallel_overhead_per_stage_cores2_snakemake {($spar2 - par * 0.5 / 2) / par * 1000:.1f} ms goal -")
PY
