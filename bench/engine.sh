#!/usr/bin/env bash
# Engine benchmarks, our `pipeline` and Snakemake side by side on the same machine:
#   1. per-stage overhead on a chain of 1,000 stages that each touch one file;
#   2. `pipeline plan` on a generated 100,000-stage workflow;
#   3. a no-op rerun over 10 GB of inputs (sparse files: the first run hashes
#      them all, a rerun must not read them again);
#   4. start-up (`--version`);
#   5. PARALLEL (40) independent 0.5 s stages at -j 2 against -j 1 (Snakemake:
#      --cores 2 against --cores 1), and what -j costs per stage.
# Both tools at equal cores, their jobs started the same way where they are
# compared (through a shell: Snakemake's `shell:` always starts one). Every
# figure is ROUNDS (5) runs, the sides in a new random order each round
# (bench/lib.sh). Ends with one line per figure: RESULT <name> <median>
# <unit> goal <goal> min <min> max <max>; a ratio's over the rounds' own.
#
#   bench/engine.sh            # about 12 minutes on 2 cores, 10 GB of (sparse) disk
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh >/dev/null
# shellcheck disable=SC1091
source .deps/env.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh
ROUNDS="${ROUNDS:-5}"
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
SAMPLES="$W/samples"
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
            f.write(f"  c{c}s{i}:\n    uses: command\n    with:\n      argv: [sh, -c, 'touch {{out}}/done']\n")
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
par = int(os.environ.get("PARALLEL", "40"))
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
# The seconds COMMAND takes (its output dropped).
timed() {
  local t0 t1
  t0=$(now)
  "$@" >/dev/null 2>&1
  t1=$(now)
  awk "BEGIN{print $t1 - $t0}"
}

echo "== 1. chain of $N stages (ours; Snakemake cannot build it)"
cd "$W/snake"
# Not --quiet: that hides the error too.
if "$SNAKEMAKE" --cores 1 all >snake-chain.log 2>&1; then snake_chain=ok; else
  snake_chain="failed: $(grep -m1 -o 'RecursionError: [a-z ]*' snake-chain.log || echo "exit status $?")"; fi
echo "snakemake on the same chain: ${snake_chain}"
cd "$W/ours"
chain() { rm -rf wd; timed "$BIN" -q run chain.yaml; }
chain_noop() { timed "$BIN" -q run chain.yaml; }
# The stages' own work: N x touch spawned from a Python loop.
touch_loop() {
  rm -rf "$W/baseline"
  python3 - "$W/baseline" "$N" <<'PY'
import os, subprocess, sys, time
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
t = time.time()
for i in range(n):
    subprocess.run(["touch", f"{d}/f{i}"], check=True)
print(f"{time.time() - t:.3f}")
PY
}
interleave "$ROUNDS" chain touch_loop
interleave "$ROUNDS" chain_noop

echo "== 1b. $N stages as 10 chains of $((N / 10)), both tools, one core and two"
for c in 1 2; do
  eval "forest_ours_$c() { cd \"\$W/ours\"; rm -rf wdf; timed \"\$BIN\" -q run forest.yaml -j $c; }"
  eval "forest_snake_$c() { cd \"\$W/snake\"; rm -rf fo .snakemake; timed \"\$SNAKEMAKE\" -s Snakefile.forest --cores $c --quiet all; }"
done
forest_noop_ours() { cd "$W/ours"; timed "$BIN" -q run forest.yaml -j 1; }
forest_noop_snake() { cd "$W/snake"; timed "$SNAKEMAKE" -s Snakefile.forest --cores 1 --quiet all; }
interleave "$ROUNDS" forest_ours_1 forest_snake_1
interleave "$ROUNDS" forest_ours_2 forest_snake_2
interleave "$ROUNDS" forest_noop_ours forest_noop_snake

echo "== 2. plan on $BIG stages"
cd "$W/ours"
plan() { timed "$BIN" -q plan big.yaml; }
interleave "$ROUNDS" plan

echo "== 3. no-op rerun over 10 GB of inputs"
first=$(timed "$BIN" -q run bigdata.yaml)
echo "first run (hashes 10 GB): ${first} s"
noop_10gb() { timed "$BIN" -q run bigdata.yaml; }
interleave "$ROUNDS" noop_10gb

echo "== 4. start-up"
startup_ours() { timed sh -c "for _ in \$(seq 20); do '$BIN' --version; done" | awk '{print $1 / 20}'; }
startup_snake() { timed sh -c "for _ in \$(seq 3); do '$SNAKEMAKE' --version; done" | awk '{print $1 / 3}'; }
interleave "$ROUNDS" startup_ours startup_snake

PAR=${PARALLEL:-40}
echo "== 5. $PAR independent 0.5 s stages, one core and two"
for c in 1 2; do
  eval "par_ours_$c() { cd \"\$W/ours\"; rm -rf wdpar; timed \"\$BIN\" -q run par.yaml -j $c; }"
  eval "par_snake_$c() { cd \"\$W/snake\"; rm -rf par .snakemake; timed \"\$SNAKEMAKE\" -s Snakefile.par --cores $c --quiet all; }"
done
interleave "$ROUNDS" par_ours_1 par_ours_2 par_snake_1 par_snake_2

echo "# snakemake on the $N-deep chain: $snake_chain"
export N
summary chain 'x / n * 1000' | result_line chain_per_stage_ours ms - %.2f
summary touch_loop 'x / n * 1000' | result_line touch_spawn_baseline_per_stage ms - %.2f
ratio_summary chain touch_loop "(a - b) / $N * 1000" | result_line engine_overhead_per_stage ms 2 %.2f
summary chain_noop | result_line chain_noop_rerun_ours s - %.3f
for c in 1 2; do
  summary "forest_ours_$c" 'x / n * 1000' | result_line "forest_per_stage_ours_j$c" ms 2 %.2f
  summary "forest_snake_$c" 'x / n * 1000' | result_line "forest_per_stage_snakemake_cores$c" ms - %.2f
  ratio_summary "forest_snake_$c" "forest_ours_$c" | result_line "forest_speedup_vs_snakemake_$c" x - %.1f
done
summary forest_noop_ours | result_line forest_noop_rerun_ours s - %.3f
summary forest_noop_snake | result_line forest_noop_rerun_snakemake s - %.3f
summary plan | result_line "plan_${BIG}_stages" s 2 %.2f
summary noop_10gb | result_line noop_rerun_10GB s 1 %.3f
echo "RESULT first_run_10GB_hashing $first s goal -"
summary startup_ours 'x * 1000' | result_line startup_version ms - %.0f
summary startup_snake 'x * 1000' | result_line startup_snakemake_version ms - %.0f
summary par_ours_1 | result_line parallel_j1_ours s - %.2f
summary par_ours_2 | result_line parallel_j2_ours s - %.2f
ratio_summary par_ours_1 par_ours_2 | result_line parallel_speedup_j2_ours x 2 %.2f
ratio_summary par_snake_1 par_snake_2 | result_line parallel_speedup_cores2_snakemake x - %.2f
summary par_ours_2 "(x - $PAR * 0.5 / 2) / $PAR * 1000" | result_line parallel_overhead_per_stage_j2_ours ms - %.1f
summary par_snake_2 "(x - $PAR * 0.5 / 2) / $PAR * 1000" | result_line parallel_overhead_per_stage_cores2_snakemake ms - %.1f
