#!/usr/bin/env bash
# A real prune with the redis eviction of issue 34 against one without: the same generated store,
# a fresh `cp -a` copy for each run, `prune --keep 5 --grace 0s` through a config naming the
# store, once with `storage.cache.blobdescriptor: redis` (a redis-server on loopback, started
# here without persistence, holding the registry's keys of every blob and layer link of the store,
# as a warm cache would) and once without a cache; the two alternate (without, with; then with,
# without), medians and their ratio printed as Markdown.
#
# Usage: benches/evict_prune.sh [--repos R] [--tags T] [--runs N] [--dir DIR]
# Needs: redis-server, redis-cli, jq, /usr/bin/time.
set -euo pipefail
repos=200 tags=60 runs=3 dir=${TMPDIR:-/tmp}/regsweep-evict
while [ $# -gt 0 ]; do
  case $1 in
    --repos) repos=$2; shift 2 ;; --tags) tags=$2; shift 2 ;; --runs) runs=$2; shift 2 ;; --dir) dir=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/regsweep
mkdir -p "$dir"
store=$dir/store-$repos-$tags
if [ ! -d "$store/docker" ]; then
  rm -rf "$store"
  "$bin" gen --root "$store" --repos "$repos" --tags "$tags" --quiet
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$dir" >/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
copy=$dir/copy
printf 'version: 0.1\nstorage:\n  filesystem: {rootdirectory: %s}\n' "$copy" >"$dir/without.yml"
printf 'version: 0.1\nstorage:\n  filesystem: {rootdirectory: %s}\n  cache: {blobdescriptor: redis}\nredis: {addr: "127.0.0.1:%s"}\n' "$copy" "$port" >"$dir/with.yml"
# The registry's keys for every blob and layer link of the store (RESP through redis-cli --pipe).
warm() {
  redis-cli -p "$port" flushdb >/dev/null
  (
    cd "$store/docker/registry/v2"
    find blobs -name data -printf '%h\n' | awk -F/ '{print "HSET blobs::sha256:" $NF " digest sha256:" $NF " size 1"}'
    find repositories -path '*/_layers/sha256/*/link' -printf '%h\n' |
      awk '{n=split($0,p,"/"); hex=p[n]; repo=$0; sub(/^repositories\//,"",repo); sub(/\/_layers\/.*/,"",repo);
            print "SADD repository::" repo "::blobs sha256:" hex; print "HSET repository::" repo "::blobs::sha256:" hex " mediatype x"}'
  ) | redis-cli -p "$port" --pipe >/dev/null
}
run() { # run LABEL: one prune on a fresh copy; appends "seconds keys_removed" to $dir/LABEL.times
  local label=$1
  rm -rf "$copy"; cp -a "$store" "$copy"; sync
  [ "$label" = with ] && warm
  local start end
  start=$(date +%s.%N)
  "$bin" prune --config "$dir/$label.yml" --keep 5 --grace 0s --json --quiet >"$dir/$label.json"
  end=$(date +%s.%N)
  echo "$(echo "$end - $start" | bc) $(jq '.cache.keys_removed // 0' "$dir/$label.json") $(jq .blobs_deleted "$dir/$label.json")" >>"$dir/$label.times"
}
rm -f "$dir"/*.times
for i in $(seq "$runs"); do
  if [ $((i % 2)) -eq 1 ]; then run without; run with; else run with; run without; fi
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
w=$(cut -d' ' -f1 "$dir/without.times" | median); c=$(cut -d' ' -f1 "$dir/with.times" | median)
echo "| prune --keep 5, $repos x $tags | without a cache | with redis eviction | ratio |"
echo "|---|---|---|---|"
echo "| median of $runs (s) | $w | $c | $(echo "scale=3; $c / $w" | bc)x |"
echo "runs without: $(cut -d' ' -f1 "$dir/without.times" | tr '\n' ' ')"
echo "runs with: $(cut -d' ' -f1 "$dir/with.times" | tr '\n' ' ') (keys removed, blobs deleted: $(tail -1 "$dir/with.times" | cut -d' ' -f2,3))"
