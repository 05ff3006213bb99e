#!/usr/bin/env bash
# Bugs made on purpose: each patch here applied alone to src/core of a scratch
# copy of HEAD, the simulator built against it and a campaign run. Prints, per
# mutant, how many seeds fail and which invariant each names first (no_panic:
# the core's own consistency check, `Relay::check`, found it first). A mutant
# that no seed catches is a blind spot of the campaign (sim/README.md,
# "Issue 20: the campaign's blind spots").
#
#   sim/mutants/run.sh                       # every sim/mutants/*.patch, 5000 seeds
#   sim/mutants/run.sh log-kill-number       # some of them, by name
#   SEEDS=10000 sim/mutants/run.sh           # a longer campaign
#   REV=81bf437 sim/mutants/run.sh           # against another commit's tree
#
# The scratch copy lives in $MUTANTS_DIR (default: $TMPDIR/agent-relay-mutants)
# and keeps its build between runs; the working tree is never touched.
set -euo pipefail

root="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
here="$root/sim/mutants"
seeds="${SEEDS:-5000}"
rev="${REV:-HEAD}"
scratch="${MUTANTS_DIR:-${TMPDIR:-/tmp}/agent-relay-mutants}"

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for p in "$here"/*.patch; do
    n="$(basename "$p" .patch)"
    names+=("$n")
  done
fi
for n in "${names[@]}"; do
  if [ ! -f "$here/$n.patch" ]; then
    echo "run.sh: no mutant '$n' (no file $here/$n.patch)" >&2
    exit 2
  fi
done

# A fresh copy of the commit's files (not the working tree's), keeping target/.
mkdir -p "$scratch/tree"
find "$scratch/tree" -mindepth 1 -maxdepth 1 ! -name target -exec rm -rf {} +
git -C "$root" archive "$rev" | tar -x -C "$scratch/tree"
pristine="$scratch/core.orig"
rm -rf "$pristine"
cp -a "$scratch/tree/src/core" "$pristine"

printf '%-28s %8s  %s\n' mutant failing "first failure (seeds)"
for n in "${names[@]}"; do
  rm -rf "$scratch/tree/src/core"
  cp -a "$pristine" "$scratch/tree/src/core"
  if ! (cd "$scratch/tree" && git apply "$here/$n.patch"); then
    echo "run.sh: $n.patch does not apply to $rev's src/core" >&2
    exit 1
  fi
  log="$scratch/$n.log"
  if ! (cd "$scratch/tree" && cargo build --release -q -p agent-relay-sim) >"$log" 2>&1; then
    echo "run.sh: $n does not build; see $log" >&2
    exit 1
  fi
  "$scratch/tree/target/release/agent-relay-sim" --seeds "$seeds" >"$log" 2>&1 || true
  failing="$(sed -n 's/^  failures  *\([0-9][0-9]*\)$/\1/p' "$log")"
  firsts="$(sed -n 's/^  FAIL seed [^:]*: \([a-z_]*\) broken.*/\1/p' "$log" | sort | uniq -c |
    sort -rn | awk '{printf "%s%s %s", sep, $2, $1; sep=", "}')"
  printf '%-28s %8s  %s\n' "$n" "${failing:-?}" "${firsts:--}"
done
rm -rf "$scratch/tree/src/core"
cp -a "$pristine" "$scratch/tree/src/core"
