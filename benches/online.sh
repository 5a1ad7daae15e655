#!/usr/bin/env bash
# Online mode against the recipe it replaces, in one run: removing the same ~2,000 tags from a
# real registry (docker-registry serving a generated store on loopback) with
#   ours:   regsweep online --keep 5 --order name --concurrency K
#   recipe: the serial curl loop of the usual cron script: _catalog, tags/list per repository,
#           then for each tag beyond the newest 5: HEAD for the digest, DELETE by digest.
# Both remove exactly the tags regsweep's dry run names for deletion. Alternating runs, each on
# a fresh copy of the store; medians and the ratio are printed as a Markdown table.
#
# Usage: benches/online.sh [--repos R] [--tags T] [--runs N] [--concurrency K] [--dir DIR]
# Needs: docker-registry, curl, jq, /usr/bin/time.
set -euo pipefail
repos=40 tags=54 runs=5 conc=8 dir=${TMPDIR:-/tmp}/regsweep-bench-online
while [ $# -gt 0 ]; do
  case $1 in
    --repos) repos=$2; shift 2 ;; --tags) tags=$2; shift 2 ;; --runs) runs=$2; shift 2 ;;
    --concurrency) conc=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/regsweep
source fixtures/lib.sh
mkdir -p "$dir"
store=$dir/store-$repos-$tags
if [ ! -d "$store/docker" ]; then
  rm -rf "$store"
  "$bin" gen --root "$store" --repos "$repos" --tags "$tags" --multiarch-every 0 --signed-every 0 --untagged 0 --quiet
fi
port=5311 url=http://127.0.0.1:5311
trap registry_stop EXIT

# The tags to delete, from regsweep's own dry run (the recipe gets the same list).
fresh() { rm -rf "$dir/run"; cp -a "$store" "$dir/run"; registry_start "$dir/run" "$port"; }
fresh
"$bin" online --url "$url" --keep 5 --order name --dry-run --json --quiet \
  | jq -r '.repos[] | .name as $r | .tags[] | select(.action == "delete") | "\($r) \(.name)"' >"$dir/delete.list"
registry_stop
n=$(wc -l <"$dir/delete.list")

recipe() {
  local accept="application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.v2+json,application/vnd.docker.distribution.manifest.list.v2+json"
  curl -fsS "$url/v2/_catalog" >/dev/null
  cut -d' ' -f1 "$dir/delete.list" | uniq | while read -r repo; do curl -fsS "$url/v2/$repo/tags/list" >/dev/null; done
  while read -r repo tag; do
    d=$(curl -fsSI -H "Accept: $accept" "$url/v2/$repo/manifests/$tag" | tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
    [ -n "$d" ] && curl -sS -o /dev/null -X DELETE "$url/v2/$repo/manifests/$d"
  done <"$dir/delete.list"
}
export -f recipe; export url dir

rm -f "$dir"/*.times
for _ in $(seq "$runs"); do
  fresh; /usr/bin/time -f %e -a -o "$dir/ours.times" "$bin" online --url "$url" --keep 5 --order name --concurrency "$conc" --quiet >/dev/null; registry_stop
  left=$(cd "$dir/run" && find docker/registry/v2/repositories -path '*/_manifests/tags/*/current/link' | wc -l)
  fresh; /usr/bin/time -f %e -a -o "$dir/recipe.times" bash -c recipe; registry_stop
  left_recipe=$(cd "$dir/run" && find docker/registry/v2/repositories -path '*/_manifests/tags/*/current/link' | wc -l)
  [ "$left" = "$left_recipe" ] || { echo "the two left different tag counts: $left vs $left_recipe" >&2; exit 1; }
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ours=$(median <"$dir/ours.times") ref=$(median <"$dir/recipe.times")
echo "Store: $repos repositories x $tags tags; $n tags deleted, $left tags left; $runs alternating runs, medians"
echo
echo "| removing $n tags | regsweep online (--concurrency $conc) | serial curl loop | ratio |"
echo "|---|---|---|---|"
echo "| wall time | ${ours} s | ${ref} s | $(echo "scale=1; $ref / $ours" | bc)x |"
