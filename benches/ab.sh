#!/usr/bin/env bash
# A/B comparison of one bench between two git revisions: each built once,
# runs interleaved, medians side by side.
#
#   benches/ab.sh [-n RUNS] [-b BENCH] [-m REGEX] [-a] REV_A REV_B [BENCH_ARGS...]
#
#   benches/ab.sh main HEAD 4 5 7          # relay scenarios 4, 5, 7; 5 runs each
#   benches/ab.sh -n 7 main benches 2      # scenario 2, 7 runs each
#   benches/ab.sh main HEAD 1 2 legacy     # only the legacy generation's rows
#   benches/ab.sh -b core main HEAD core_route   # criterion filter
#
# -n RUNS   runs per revision (default 5)
# -b BENCH  the cargo bench target (default relay)
# -m REGEX  print only the figures whose name matches (grep -E)
# -a        also print the figures that were identical in every run
#
# Each revision is exported with `git archive` (no checkout, no worktree: the
# repository is left as it is; only committed work is measured) into
# $AB_DIR/src-<commit> and built once with `cargo bench --no-run` into
# $AB_DIR/target, which the revisions share (their dependencies are built
# once); the bench executable is then copied to $AB_DIR/bin/<bench>-<commit>,
# which is what runs. Cargo names a revision's artifacts the same whatever its
# source path, so the next revision's build overwrites them; and `git archive`
# stamps files with the commit's time, older than the last build's outputs, so
# the exported files are touched first or cargo would call the stale build
# fresh (before both fixes both sides could run one executable; the script
# now stops when they are identical). AB_DIR defaults to a new temporary
# directory, removed at exit; set it to keep the builds and the raw outputs
# (runs/A-1.txt, ...) and reuse them next time.
#
# Round i runs A then B when i is odd, B then A when even, so a machine that
# gets busier or quieter during the comparison affects both sides alike.
#
# Read back from each run: every number in the figure, baseline and ratio
# columns of the relay bench's table rows, and the middle estimate of
# criterion's time: (in ms) and thrpt: (Melem/s or GiB/s) lines. Printed: per
# figure (in the order B prints them), A's and B's median with their ranges,
# B/A, and "!" where the medians differ by more than 10 %; then how many
# figures both printed and how many of those were flagged. Figures with the same
# value in every run of both (constants such as "8 clients", unchanged counts)
# are left out unless -a is given. A figure only one side prints (rows added
# or renamed in between) shows "-" for the other.
set -euo pipefail

runs=5
bench=relay
match=
all=0
while getopts "n:b:m:ah" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    b) bench=$OPTARG ;;
    m) match=$OPTARG ;;
    a) all=1 ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
if [ $# -lt 2 ]; then
  echo "usage: benches/ab.sh [-n RUNS] [-b BENCH] [-m REGEX] [-a] REV_A REV_B [BENCH_ARGS...]" >&2
  exit 2
fi
rev_a=$1 rev_b=$2
shift 2

repo=$(git rev-parse --show-toplevel)
if [ -z "${AB_DIR:-}" ]; then
  AB_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ab.XXXXXX")
  trap 'rm -rf "$AB_DIR"' EXIT
fi
mkdir -p "$AB_DIR/runs"

declare -A rev exe src target commit_of
rev[A]=$rev_a
rev[B]=$rev_b

# Exports and builds revision $1 for side $2; sets exe/src/target[$2].
build() {
  local commit dir built
  commit=$(git -C "$repo" rev-parse --verify "$1^{commit}")
  dir=$AB_DIR/src-$commit
  if [ ! -d "$dir" ]; then
    rm -rf "$dir.part"
    mkdir -p "$dir.part"
    git -C "$repo" archive "$commit" | tar -x -C "$dir.part"
    find "$dir.part" -type f -exec touch {} +
    mv "$dir.part" "$dir"
  fi
  src[$2]=$dir
  target[$2]=$AB_DIR/target
  commit_of[$2]=$commit
  exe[$2]=$AB_DIR/bin/$bench-$commit
  if [ -x "${exe[$2]}" ]; then
    echo "ab: $2 = $1 (${commit:0:12}) already built" >&2
    return
  fi
  echo "ab: building $2 = $1 (${commit:0:12}) ..." >&2
  built=$(cd "$dir" && CARGO_TARGET_DIR=${target[$2]} \
    cargo bench --bench "$bench" --no-run --message-format=json 2>>"$AB_DIR/build.log" |
    grep '"kind":\["bench"\]' | grep "\"name\":\"$bench\"" |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1 || true)
  if [ -z "$built" ]; then
    echo "ab: could not build bench '$bench' at $1; see $AB_DIR/build.log" >&2
    exit 1
  fi
  mkdir -p "$AB_DIR/bin"
  cp "$built" "${exe[$2]}"
}

# Reads one run's output; prints "SIDE<tab>figure<tab>value" lines.
parse() {
  awk -v side="$1" '
    function emit(key, v) { printf "%s\t%s\t%s\n", side, key, v }
    # Every number in column text s, as key, key #2, ... when there are several.
    function numbers(key, s,   c, k, v) {
      c = 0
      while (match(s, /[-+]?[0-9]+(\.[0-9]+)?/)) {
        v[++c] = substr(s, RSTART, RLENGTH) + 0
        s = substr(s, RSTART + RLENGTH)
      }
      for (k = 1; k <= c; k++) emit(key (c > 1 ? " #" k : ""), v[k])
    }
    # The middle of criterion'"'"'s three estimates, in ms, Melem/s or GiB/s.
    function estimate(kind,   s, w, v, u) {
      s = $0
      sub(/.*\[/, "", s)
      split(s, w, " ")
      v = w[3] + 0
      u = w[4]
      if (kind == "time") {
        if (u == "ps") v /= 1e9
        else if (u == "ns") v /= 1e6
        else if (u == "us" || u == "\302\265s") v /= 1e3
        else if (u == "s") v *= 1e3
        emit(name " time (ms)", v)
      } else if (u ~ /elem\/s$/) {
        if (u ~ /^K/) v /= 1e3
        else if (u ~ /^G/) v *= 1e3
        else if (u !~ /^M/) v /= 1e6
        emit(name " thrpt (Melem/s)", v)
      } else {
        if (u ~ /^Ki/) v /= 1048576
        else if (u ~ /^Mi/) v /= 1024
        else if (u !~ /^Gi/) v /= 1073741824
        emit(name " thrpt (GiB/s)", v)
      }
    }
    /^\| / && !/^\| scenario \|/ && !/^\|---/ {
      line = $0
      sub(/^\| /, "", line)
      sub(/ \|$/, "", line)
      if (split(line, f, / \| /) >= 4) {
        numbers(f[1] " [figure]", f[2])
        numbers(f[1] " [baseline]", f[3])
        numbers(f[1] " [ratio]", f[4])
      }
      next
    }
    /^Benchmarking .*: Analyzing/ {
      name = $0
      sub(/^Benchmarking /, "", name)
      sub(/: Analyzing.*/, "", name)
      state = 1
      next
    }
    state == 1 && /time:/ { estimate("time"); state = 2; next }
    state == 2 && /thrpt:/ { estimate("thrpt"); state = 0; next }
  '
}

build "$rev_a" A
build "$rev_b" B
if [ "${commit_of[A]}" != "${commit_of[B]}" ] && cmp -s "${exe[A]}" "${exe[B]}"; then
  echo "ab: $rev_a and $rev_b built to identical executables; nothing to compare" >&2
  exit 1
fi

values=$AB_DIR/values.tsv
: >"$values"
for ((i = 1; i <= runs; i++)); do
  if ((i % 2)); then order="A B"; else order="B A"; fi
  for side in $order; do
    out=$AB_DIR/runs/$side-$i.txt
    echo "ab: round $i/$runs: $side (${rev[$side]})" >&2
    if ! (cd "${src[$side]}" && CARGO_TARGET_DIR=${target[$side]} \
      "${exe[$side]}" --bench "$@") >"$out" 2>&1; then
      echo "ab: the bench failed; its output:" >&2
      tail -n 20 "$out" >&2
      exit 1
    fi
    parse "$side" <"$out" >>"$values"
  done
done

echo
echo "A = ${rev[A]} (${commit_of[A]:0:12}), B = ${rev[B]} (${commit_of[B]:0:12}): $bench bench ${*:-(all)}, medians of $runs runs each, interleaved"
echo
echo "| figure | A median (range) | B median (range) | B/A | |"
echo "|---|---|---|---|---|"
awk -F '\t' -v all="$all" -v pick="$match" '
  {
    if (!(($1, $2) in seen)) {
      seen[$1, $2] = 1
      order[$1, ++nk[$1]] = $2
    }
    c = ++n[$1, $2]
    val[$1, $2, c] = $3
  }
  # Sets med, lo, hi for side s, figure k; returns the number of values.
  function stats(s, k,   m, i, j, t, a) {
    m = n[s, k]
    for (i = 1; i <= m; i++) a[i] = val[s, k, i]
    for (i = 2; i <= m; i++) {
      t = a[i]
      for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
      a[j + 1] = t
    }
    if (m == 0) return 0
    med = (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    lo = a[1]
    hi = a[m]
    return m
  }
  function line(k,   ma, mb, ca, cb, r, ratio, flag, same, first) {
    if (pick != "" && k !~ pick) return
    ma = mb = ""
    ca = cb = "-"
    same = 1
    if (stats("A", k)) { ma = med; ca = sprintf("%.4g (%.4g-%.4g)", med, lo, hi); first = lo; same = lo == hi }
    if (stats("B", k)) {
      mb = med
      cb = sprintf("%.4g (%.4g-%.4g)", med, lo, hi)
      same = same && lo == hi && (ma == "" || lo == first)
    }
    if (same && !all) { hidden++; return }
    ratio = "-"
    flag = ""
    if (ma != "" && mb != "" && ma != 0) {
      r = mb / ma
      ratio = sprintf("%.3f", r)
      compared++
      if (r > 1.1 || r < 0.9) { flag = "!"; flagged++ }
    } else if (ma == "" || mb == "") {
      one_side++
    }
    printf "| %s | %s | %s | %s | %s |\n", k, ca, cb, ratio, flag
  }
  END {
    for (i = 1; i <= nk["B"]; i++) line(order["B", i])
    for (i = 1; i <= nk["A"]; i++) if (!(("B", order["A", i]) in seen)) line(order["A", i])
    printf "\n%d figures in both: %d with medians more than 10 %% apart (!)", compared, flagged
    if (one_side) printf "; %d in one only (-)", one_side
    printf "\n"
    if (hidden) printf "(%d figures identical in every run left out; -a shows them)\n", hidden
  }
' "$values"
