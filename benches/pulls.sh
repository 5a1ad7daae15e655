#!/usr/bin/env bash
# Retention by last pull on a large store (issue 25): `prune --keep 5 --dry-run` against the same
# prune with `--keep-pulled-within 1d --pulls REC`, where the record holds a pull of every tag
# (by tag, with its digest: an access log of one pull per tag, spread over the last two days,
# imported with --root, so that half the tags were pulled within the day). Alternating runs,
# warm page cache; medians of time and peak RSS (/usr/bin/time -v), printed as Markdown.
#
# Usage: benches/pulls.sh [--repos R] [--tags T] [--runs N] [--dir DIR]
# Needs: /usr/bin/time, jq; disk for one store (about 6.5 GB for 1000 x 60).
set -euo pipefail
repos=1000 tags=60 runs=5 dir=${TMPDIR:-/tmp}/regsweep-bench
while [ $# -gt 0 ]; do
  case $1 in
    --repos) repos=$2; shift 2 ;; --tags) tags=$2; shift 2 ;; --runs) runs=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
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

# One pull of every tag, spread evenly back over two days, as the registry's access log.
record=$dir/pulls-$repos-$tags.db
if [ ! -f "$record" ]; then
  repositories=$store/docker/registry/v2/repositories
  find "$repositories" -path '*/_manifests/tags/*/current/link' -printf '%P\n' | python3 -c '
import sys, time
now, lines = time.time(), sys.stdin.read().splitlines()
for n, line in enumerate(lines):
    repo, _, rest = line.partition("/_manifests/tags/")
    tag = rest.split("/")[0]
    at = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now - 60 - n * 2 * 86400 // len(lines)))
    print(f"10.0.0.7 - - [{at}] \"GET /v2/{repo}/manifests/{tag} HTTP/1.1\" 200 1161 \"\" \"containerd/1.7.24\"")
' >"$dir/access.log"
  "$bin" pulls import --pulls "$record" --root "$store" "$dir/access.log"
fi

measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$dir/time.out" "$@" >/dev/null 2>"$dir/$label.err" || { echo "$label failed:" >&2; cat "$dir/$label.err" >&2; exit 1; }
  cat "$dir/time.out" >>"$dir/$label.times"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -v c="$1" '{print $c}' "$dir/$2.times" | median; }
rm -f "$dir"/plain.times "$dir"/pulled.times "$dir"/overhead.times "$dir"/order.times

plain=(prune --root "$store" --keep 5 --dry-run --quiet)
pulled=("${plain[@]}" --keep-pulled-within 1d --pulls "$record")
# A window no pull falls in: the same plan as without, so the cost of reading and applying
# the record alone.
overhead=("${plain[@]}" --keep-pulled-within 1s --pulls "$record")
order=("${plain[@]}" --order pull --pulls "$record")
"$bin" "${plain[@]}" >/dev/null # warm the page cache
for _ in $(seq "$runs"); do
  measure plain "$bin" "${plain[@]}"
  measure pulled "$bin" "${pulled[@]}"
  measure overhead "$bin" "${overhead[@]}"
  measure order "$bin" "${order[@]}"
done
kept() { "$bin" "$@" --json | jq .tags_kept; }
kept_plain=$(kept "${plain[@]}") kept_pulled=$(kept "${pulled[@]}")
kept_overhead=$(kept "${overhead[@]}") kept_order=$(kept "${order[@]}")
echo
echo "$repos x $tags store, $(wc -l <"$dir/access.log") tags pulled once each over two days ($runs runs each, warm cache)"
echo
echo "| run | time | peak RSS | tags kept |"
echo "|---|---|---|---|"
echo "| prune --keep 5 --dry-run | $(col 1 plain) s | $(( $(col 2 plain) / 1024 )) MB | $kept_plain |"
echo "| same, --keep-pulled-within 1d --pulls REC | $(col 1 pulled) s | $(( $(col 2 pulled) / 1024 )) MB | $kept_pulled |"
echo "| same, --keep-pulled-within 1s --pulls REC (no pull in it: the same plan) | $(col 1 overhead) s | $(( $(col 2 overhead) / 1024 )) MB | $kept_overhead |"
echo "| same, --order pull --pulls REC | $(col 1 order) s | $(( $(col 2 order) / 1024 )) MB | $kept_order |"
echo
for l in pulled overhead order; do
  awk -v l="$l" -v a="$(col 1 $l)" -v b="$(col 1 plain)" 'BEGIN { printf "ratio %s: %.2fx\n", l, a / b }'
done
for l in plain pulled overhead order; do echo "runs $l: $(awk '{printf "%s ", $1}' "$dir/$l.times")"; done
