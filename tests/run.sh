#!/usr/bin/env bash
# The test command (README, .ci/run): installs the real parts the tests run against when they
# are missing (Debian packages: docker-registry, skopeo, umoci, curl, jq), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in docker-registry skopeo umoci curl jq tar; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" ca-certificates >/dev/null
fi
# skopeo reads a trust policy; the Debian package brings one, a bare container may not have it.
if [ ! -e /etc/containers/policy.json ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo mkdir -p /etc/containers
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' | $sudo tee /etc/containers/policy.json >/dev/null
fi
cargo test --locked "$@"
