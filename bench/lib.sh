# Shared by the bench scripts (sourced): each side of a comparison run
# ROUNDS times, the sides in a fresh random order every round so that drift
# on the machine (other load, thermal, the page cache) falls on both alike,
# and every figure reported as its median with the range.
#
#   SAMPLES=DIR interleave ROUNDS side_a side_b ...
#
# runs each side (a shell function that prints one number, its figure for
# the round) ROUNDS times and keeps the numbers, one a line, in DIR/<side>.

interleave() {
  local rounds=$1 r s
  shift
  mkdir -p "$SAMPLES"
  for ((r = 1; r <= rounds; r++)); do
    for s in $(printf '%s\n' "$@" | shuf); do
      "$s" >>"$SAMPLES/$s"
      printf 'round %d: %s %s\n' "$r" "$s" "$(tail -1 "$SAMPLES/$s")" >&2
    done
  done
}

# "median min max" of numbers, one a line, on standard input.
median_range() {
  sort -g | awk '{ v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
}

# "median min max" of a side's samples, each first mapped by awk program
# EXPR of x (default: x itself), e.g. `summary ours 'n / x'` for a rate.
summary() {
  awk -v n="${N:-1}" "{ x = \$1; print ${2:-x} }" "$SAMPLES/$1" | median_range
}

# "median min max" of the round-by-round ratio EXPR of a (side $1's sample)
# and b (side $2's), round r's against round r's.
ratio_summary() {
  paste "$SAMPLES/$1" "$SAMPLES/$2" | awk "{ a = \$1; b = \$2; print ${3:-a / b} }" | median_range
}

# RESULT NAME MEDIAN UNIT goal GOAL min MIN max MAX, from "median min max"
# on standard input, printed with printf format FMT (default %.3g).
result_line() {
  local name=$1 unit=$2 goal=$3 fmt=${4:-%.3g} m lo hi
  read -r m lo hi
  # shellcheck disable=SC2059
  printf "RESULT %s $fmt %s goal %s min $fmt max $fmt\n" "$name" "$m" "$unit" "$goal" "$lo" "$hi"
}

# The page cache before a run: with COLD=1 dropped (root only), else FILES
# read once so that every side starts warm alike.
page_cache() {
  if ((${COLD:-0})); then
    sync
    echo 3 >/proc/sys/vm/drop_caches
  else
    cat "$@" >/dev/null 2>&1 || true
  fi
}
