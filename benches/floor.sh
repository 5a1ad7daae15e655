#!/usr/bin/env bash
# The file system's floor for deleting what a collection deletes, on fresh copies of a store:
#   1. the reference's: with the API's deletions applied (as benches/compare.sh prepares the
#      reference path), the blob folders the reference collector's dry run lists;
#   2. regsweep's: the folders a real `regsweep prune --keep 5` removed (timed too), found by
#      listing the copy's folders before and after;
# each removed again on a fresh copy by nothing but `rm -rf`, 256 a process, 128 processes at
# once, and timed. No tool that deletes at least those folders can beat it.
#
# Usage: benches/floor.sh [--dir DIR] [--repos R] [--tags T]   (after benches/compare.sh, same options)
set -euo pipefail
repos=1000 tags=60 dir=${TMPDIR:-/tmp}/regsweep-bench
while [ $# -gt 0 ]; do
  case $1 in
    --repos) repos=$2; shift 2 ;; --tags) tags=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/regsweep
store=$dir/store-$repos-$tags copy=$dir/floor
[ -s "$dir/api-deletes.txt" ] || { echo "run benches/compare.sh --dir $dir first" >&2; exit 2; }
fresh_copy() { rm -rf "$copy"; cp -a "$store" "$copy"; }
# rm_all WHAT LIST: removes the folders of LIST (paths under the copy) and prints the time
rm_all() {
  echo "$1: $(wc -l <"$2") folders"
  sync
  /usr/bin/time -f "  rm -rf, 128 processes: %e s" xargs -d '\n' -P 128 -n 256 rm -rf <"$2"
}

fresh_copy
sed "s|^STORE|$copy|" "$dir/api-deletes.txt" | tr '\n' '\0' | xargs -0 rm -rf
printf 'version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: %s}\n' "$copy" >"$dir/floor.yml"
docker-registry garbage-collect --dry-run "$dir/floor.yml" 2>/dev/null \
  | sed -n "s|^blob eligible for deletion: sha256:\(..\)\(.*\)$|$copy/docker/registry/v2/blobs/sha256/\1/\1\2|p" \
  >"$dir/floor-ref.txt"
rm_all "the reference's blob folders" "$dir/floor-ref.txt"

fresh_copy
(cd "$copy" && find docker -type d | sort) >"$dir/floor-before.txt"
sync
/usr/bin/time -f "regsweep prune --keep 5, real: %e s, peak %M KB" "$bin" prune --root "$copy" --keep 5 --quiet >/dev/null
(cd "$copy" && find docker -type d | sort) | comm -23 "$dir/floor-before.txt" - >"$dir/floor-gone.txt"
# Only the topmost removed folders: rm -rf takes what is inside.
awk -v c="$copy" 'NR == FNR { gone[$0] = 1; next }
  { p = $0; sub(/\/[^\/]*$/, "", p); if (!(p in gone)) print c "/" $0 }' \
  "$dir/floor-gone.txt" "$dir/floor-gone.txt" >"$dir/floor-ours.txt"
fresh_copy
rm_all "the folders regsweep's prune removed" "$dir/floor-ours.txt"
rm -rf "$copy" "$dir"/floor-*.txt "$dir/floor.yml"
