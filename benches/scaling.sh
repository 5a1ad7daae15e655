#!/usr/bin/env bash
# Time and memory per object as the store grows: for each store given, the medians of
# `regsweep gc --dry-run` and `regsweep prune --keep 5 --dry-run` (warm cache, each after one
# unmeasured warm-up run), of the floor of gc's reads (benches/floor_read.rs) and of
# `docker-registry garbage-collect --dry-run`, as a Markdown table with microseconds and peak
# bytes per blob, and the pages the kernel reclaimed during the prune (kswapd and direct:
# where a store's inodes outgrow the memory, see BENCHMARKS.md). With --cold, the page cache is
# dropped before every run instead (needs root), and no warm-up run; --ref-runs 0 leaves the
# reference out (it takes minutes a run at 2.5M blobs).
#
# Usage: benches/scaling.sh [--cold] [--runs N] [--ref-runs N] STORE...
#   e.g. for r in 100 1000 10000; do regsweep gen --root /mnt/big/s$r --repos $r --tags 60; done
#        benches/scaling.sh /mnt/big/s100 /mnt/big/s1000 /mnt/big/s10000
# Needs: docker-registry, /usr/bin/time.
set -euo pipefail
runs=3 ref_runs=1 cold=0
while [ $# -gt 0 ]; do
  case $1 in
    --runs) runs=$2; shift 2 ;; --ref-runs) ref_runs=$2; shift 2 ;; --cold) cold=1; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;; *) break ;;
  esac
done
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/regsweep
floor=$(cargo bench --bench floor_read --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*floor_read[^"]*\)".*/\1/p' | tail -1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
reclaimed() { awk '/^pgsteal_(kswapd|direct) / {n += $2} END {print n + 0}' /proc/vmstat; }
# measure N CMD...: prints "median_seconds median_peak_kb median_reclaimed_pages" of N runs
# after one warm-up (or, with --cold, each after the page cache is dropped); "0 0 0" for N = 0
measure() {
  local n=$1; shift
  [ "$n" -gt 0 ] || { echo "0 0 0"; return; }
  [ "$cold" = 1 ] || "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
  : >"$tmp/times"
  for _ in $(seq "$n"); do
    [ "$cold" = 1 ] && { sync; echo 3 >/proc/sys/vm/drop_caches; }
    local before; before=$(reclaimed)
    /usr/bin/time -f "%e %M" -o "$tmp/t" "$@" >/dev/null 2>&1
    echo "$(cat "$tmp/t") $(($(reclaimed) - before))" >>"$tmp/times"
  done
  echo "$(awk '{print $1}' "$tmp/times" | median) $(awk '{print $2}' "$tmp/times" | median) $(awk '{print $3}' "$tmp/times" | median)"
}
echo "| blobs | manifests | floor | gc --dry-run | prune --keep 5 --dry-run | reference gc --dry-run | ratio | floor per blob | regsweep gc per blob | prune per blob | reference per blob | pages reclaimed during the prune |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for store in "$@"; do
  blobs=$(find "$store/docker/registry/v2/blobs/sha256" -mindepth 2 -maxdepth 2 -type d | wc -l)
  manifests=$(find "$store/docker/registry/v2/repositories" -path '*/_manifests/revisions/sha256/*' -name link | wc -l)
  printf 'version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: %s}\n' "$store" >"$tmp/config.yml"
  read -r ft _ _ < <(measure "$runs" "$floor" "$store")
  read -r gt gm _ < <(measure "$runs" "$bin" gc --root "$store" --dry-run --quiet)
  read -r pt pm pr < <(measure "$runs" "$bin" prune --root "$store" --keep 5 --dry-run --quiet)
  read -r rt rm _ < <(measure "$ref_runs" docker-registry garbage-collect --dry-run "$tmp/config.yml")
  awk -v b="$blobs" -v m="$manifests" -v ft="$ft" -v gt="$gt" -v gm="$gm" -v pt="$pt" -v pm="$pm" -v pr="$pr" -v rt="$rt" -v rm="$rm" 'BEGIN {
    printf "| %d | %d | %.2f s | %.2f s, %d MB | %.2f s, %d MB | ", b, m, ft, gt, gm / 1024, pt, pm / 1024
    if (rt > 0) printf "%.2f s, %d MB | %.1fx | ", rt, rm / 1024, rt / gt; else printf "- | - | "
    printf "%.2f us | %.2f us, %d B | %.2f us, %d B | ", ft * 1e6 / b, gt * 1e6 / b, gm * 1024 / b, pt * 1e6 / b, pm * 1024 / b
    if (rt > 0) printf "%.2f us, %d B | ", rt * 1e6 / b, rm * 1024 / b; else printf "- | "
    printf "%d |\n", pr }'
done
echo
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -r); medians of $runs runs (reference: $ref_runs), $([ "$cold" = 1 ] && echo cold || echo warm) cache"
