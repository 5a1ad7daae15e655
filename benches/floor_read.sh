#!/usr/bin/env bash
# regsweep beside the floor of its reads (benches/floor_read.rs: the same system calls, nothing
# parsed or decided), whole processes alternating in one run, on the 1,000 x 60 store:
#   gc --dry-run against the floor, warm (page cache kept) and cold (dropped before every run);
#   prune --keep 5 --dry-run (its text plan to a file, as a user runs it), the same as --json,
#   and du (its table), warm, each against gc --dry-run; the prune also against its own floor
#   (floor_read --prune: the gc floor's reads plus every tag link read and every layer link and
#   blob `data` stat'ed), and du against its own (floor_read --du: the gc floor's reads and every
#   blob `data` stat'ed).
# Medians, spread (min-max) and user/system CPU printed as Markdown; each run's line kept in
# DIR/floor.times. Extra arguments go to every regsweep run (e.g. -j 32).
#
# Usage: benches/floor_read.sh [--dir DIR] [--repos R] [--tags T] [--runs N] [--cold-runs N] [-- ARGS]
# Needs: /usr/bin/time; root for the cold runs (drop_caches).
set -euo pipefail
repos=1000 tags=60 runs=7 cold_runs=5 dir=${TMPDIR:-/tmp}/regsweep-bench extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --repos) repos=$2; shift 2 ;; --tags) tags=$2; shift 2 ;; --runs) runs=$2; shift 2 ;;
    --cold-runs) cold_runs=$2; shift 2 ;; --dir) dir=$2; shift 2 ;; --) shift; extra=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
cargo build --release -q
floor=$(cargo bench --bench floor_read --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*floor_read[^"]*\)".*/\1/p' | tail -1)
bin=$PWD/target/release/regsweep
store=$dir/store-$repos-$tags
mkdir -p "$dir"
[ -d "$store/docker" ] || "$bin" gen --root "$store" --repos "$repos" --tags "$tags" --quiet
times=$dir/floor.times
: >"$times"
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# measure NAME CMD...: one line "NAME wall user sys" into the times file.
measure() {
  local name=$1; shift
  /usr/bin/time -f "$name %e %U %S" -a -o "$times" "$@" >"$dir/floor.out" 2>/dev/null
}
gc() { measure "$1" "$bin" gc --root "$store" --dry-run --quiet "${extra[@]}"; }
"$floor" "$store" >/dev/null 2>&1; gc warmup # the cache filled
for _ in $(seq "$runs"); do
  measure floor-warm "$floor" "$store"
  gc gc-warm
  measure floor-prune "$floor" "$store" --prune
  measure floor-du "$floor" "$store" --du
  measure prune-text "$bin" prune --keep 5 --root "$store" --dry-run "${extra[@]}"
  measure prune-json "$bin" prune --keep 5 --root "$store" --dry-run --json "${extra[@]}"
  measure du "$bin" du --root "$store" "${extra[@]}"
done
for _ in $(seq "$cold_runs"); do
  drop_caches; measure floor-cold "$floor" "$store"
  drop_caches; gc gc-cold
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
stat() { awk -v n="$1" -v c="$2" '$1 == n {print $c}' "$times" | median; }
spread() { awk -v n="$1" '$1 == n {print $2}' "$times" | sort -n | sed -n '1p;$p' | paste -sd- -; }
row() { # row LABEL NAME BASE
  printf '| %s | %.2f s (%s) | %.2f / %.2f s | %.2fx |\n' "$1" "$(stat "$2" 2)" "$(spread "$2")" \
    "$(stat "$2" 3)" "$(stat "$2" 4)" "$(echo "$(stat "$2" 2) / $(stat "$3" 2)" | bc -l)"
}
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -r); $runs warm and $cold_runs cold runs, medians; regsweep ${extra[*]:-(default -j)}"
echo
echo "| run | wall, median (min-max) | user / system CPU | ratio |"
echo "|---|---|---|---|"
row "floor, warm" floor-warm floor-warm
row "gc --dry-run, warm (to the floor)" gc-warm floor-warm
row "floor, cold" floor-cold floor-cold
row "gc --dry-run, cold (to the floor)" gc-cold floor-cold
row "floor --prune, warm (to the floor)" floor-prune floor-warm
row "prune --keep 5 --dry-run, text (to gc)" prune-text gc-warm
row "prune --keep 5 --dry-run, text (to floor --prune)" prune-text floor-prune
row "prune --keep 5 --dry-run --json (to gc)" prune-json gc-warm
row "floor --du, warm (to the floor)" floor-du floor-warm
row "du (to gc)" du gc-warm
row "du (to floor --du)" du floor-du
