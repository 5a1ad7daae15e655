#!/usr/bin/env bash
# The file system's floor for the reference's sweep: on a copy of a store with the API's
# deletions applied (as benches/compare.sh prepares the reference path), the blob folders the
# reference collector's dry run lists are removed by nothing but `rm -rf`, 256 a process, 128
# processes at once, and timed. No tool that deletes at least those folders can beat it.
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
store=$dir/store-$repos-$tags copy=$dir/floor
[ -s "$dir/api-deletes.txt" ] || { echo "run benches/compare.sh --dir $dir first" >&2; exit 2; }
rm -rf "$copy"
cp -a "$store" "$copy"
sed "s|^STORE|$copy|" "$dir/api-deletes.txt" | tr '\n' '\0' | xargs -0 rm -rf
printf 'version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: %s}\n' "$copy" >"$dir/floor.yml"
docker-registry garbage-collect --dry-run "$dir/floor.yml" 2>/dev/null \
  | sed -n "s|^blob eligible for deletion: sha256:\(..\)\(.*\)$|$copy/docker/registry/v2/blobs/sha256/\1/\1\2|p" \
  >"$dir/floor-blobs.txt"
echo "$(wc -l <"$dir/floor-blobs.txt") blob folders"
sync
/usr/bin/time -f "rm -rf of the reference's blob folders, 128 processes: %e s" \
  xargs -d '\n' -P 128 -n 256 rm -rf <"$dir/floor-blobs.txt"
rm -rf "$copy"
