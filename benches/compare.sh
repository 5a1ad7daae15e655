#!/usr/bin/env bash
# Whole-process comparison of regsweep against the reference collector, in one run:
#   1. gc --dry-run: `regsweep gc --dry-run` against `docker-registry garbage-collect --dry-run`,
#      alternating, warm page cache, then cold (caches dropped before every run);
#   2. a real prune --keep 5 against the reference path: the same tags removed the way the API
#      delete does (tag folders, and revision folders of deleted digests), then
#      `docker-registry garbage-collect`, timed alone; each on a fresh copy of the store.
# Medians and ratios are printed as a Markdown table, with peak RSS (/usr/bin/time -v).
#
# Usage: benches/compare.sh [--repos R] [--tags T] [--runs N] [--cold-runs N] [--prune-runs N] [--dir DIR]
# Needs: docker-registry, jq, /usr/bin/time; root for the cold runs (drop_caches); disk for
# three copies of the store (about 6.5 GB each for 1000 x 60).
set -euo pipefail
repos=1000 tags=60 runs=5 cold_runs=3 prune_runs=3 dir=${TMPDIR:-/tmp}/regsweep-bench
while [ $# -gt 0 ]; do
  case $1 in
    --repos) repos=$2; shift 2 ;; --tags) tags=$2; shift 2 ;; --runs) runs=$2; shift 2 ;;
    --cold-runs) cold_runs=$2; shift 2 ;; --prune-runs) prune_runs=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/regsweep
store=$dir/store-$repos-$tags
mkdir -p "$dir"
if [ ! -d "$store/docker" ]; then
  rm -rf "$store"
  "$bin" gen --root "$store" --repos "$repos" --tags "$tags" --quiet
fi
config() { printf 'version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: %s}\n' "$1" >"$dir/$2.yml"; echo "$dir/$2.yml"; }
cfg=$(config "$store" store)

# measure LABEL CMD...: one run; appends "seconds rss_kb" to $dir/LABEL.times
measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$dir/time.out" "$@" >/dev/null 2>"$dir/$label.err" || { echo "$label failed:" >&2; cat "$dir/$label.err" >&2; exit 1; }
  cat "$dir/time.out" >>"$dir/$label.times"
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -v c="$1" '{print $c}' "$dir/$2.times" | median; }
rm -f "$dir"/*.times

counts=$("$bin" gc --root "$store" --dry-run --json --quiet | jq -r '"\(.repositories) repositories, \(.tags_kept) tags"')
blobs=$(find "$store/docker/registry/v2/blobs" -name data | wc -l)
manifests=$(find "$store/docker/registry/v2/repositories" -path '*/_manifests/revisions/sha256/*/link' | wc -l)
files=$(find "$store" -type f | wc -l)

for _ in $(seq "$runs"); do
  measure gc-warm-ours "$bin" gc --root "$store" --dry-run --quiet
  measure gc-warm-ref docker-registry garbage-collect --dry-run "$cfg"
done
if [ "$cold_runs" -gt 0 ]; then
  for _ in $(seq "$cold_runs"); do
    drop_caches; measure gc-cold-ours "$bin" gc --root "$store" --dry-run --quiet
    drop_caches; measure gc-cold-ref docker-registry garbage-collect --dry-run "$cfg"
  done
fi

# The reference path's input: the tags regsweep would delete, deleted as the API does.
"$bin" prune --root "$store" --keep 5 --dry-run --json --quiet >"$dir/plan.json"
jq -r --arg v2 "$store/docker/registry/v2/repositories" '.repos[] | .name as $r | .tags[] | select(.action != "keep")
  | "\($v2)/\($r)/_manifests/tags/\(.name)",
    (select(.action == "delete") | "\($v2)/\($r)/_manifests/revisions/sha256/\(.digest[7:])")' "$dir/plan.json" \
  | sed "s|^$store|STORE|" | sort -u >"$dir/api-deletes.txt"
for _ in $(seq "$prune_runs"); do
  rm -rf "$dir/ours" "$dir/ref"
  cp -a "$store" "$dir/ours"; cp -a "$store" "$dir/ref"
  sed "s|^STORE|$dir/ref|" "$dir/api-deletes.txt" | tr '\n' '\0' | xargs -0 rm -rf
  refcfg=$(config "$dir/ref" ref)
  sync # the copies' writeback must not land inside a measured run
  measure prune-ours "$bin" prune --root "$dir/ours" --keep 5 --quiet
  measure prune-ref docker-registry garbage-collect "$refcfg"
done
rm -rf "$dir/ours" "$dir/ref"

row() {
  local what=$1 a=$2 b=$3
  [ -s "$dir/$a.times" ] || return 0
  local ta tb ma mb
  ta=$(col 1 "$a"); tb=$(col 1 "$b"); ma=$(col 2 "$a"); mb=$(col 2 "$b")
  printf '| %s | %s s | %s s | %.1fx | %d MB | %d MB |\n' "$what" "$ta" "$tb" "$(echo "$tb / $ta" | bc -l)" $((ma / 1024)) $((mb / 1024))
}
echo
echo "Store: $counts, $manifests manifests, $blobs blobs, $files files ($repos x $tags, generated)"
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -r); medians of $runs warm, $cold_runs cold, $prune_runs prune runs"
echo
echo "| run | regsweep | reference | ratio | regsweep peak RSS | reference peak RSS |"
echo "|---|---|---|---|---|---|"
row "gc --dry-run, warm cache" gc-warm-ours gc-warm-ref
row "gc --dry-run, cold cache" gc-cold-ours gc-cold-ref
row "prune --keep 5 (real) vs API deletes + garbage-collect" prune-ours prune-ref
