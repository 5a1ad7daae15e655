#!/usr/bin/env bash
# Builds the regsweep container image as an OCI archive, with no network and no container
# engine: a static binary (glibc, +crt-static) on an empty base, with CA certificates for
# online mode and buckets, a non-root default user (65532) and OCI annotations.
#   contrib/container/build.sh OUT.tar [NAME]     NAME defaults to regsweep:<version>
#   podman load -i OUT.tar    (or: docker load -i OUT.tar)
# The binary is left in target/release/regsweep (static, it runs anywhere the dynamic one does).
# The archive is reproducible: file times are those of the last commit (SOURCE_DATE_EPOCH).
set -euo pipefail
out=${1:?usage: contrib/container/build.sh OUT.tar [NAME]}
top=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)
name=${2:-regsweep:$version}
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || echo 0)}
revision=$(git -C "$top" rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
# The cargo profile (BUILD_PROFILE=dev: a quick unoptimized build, as the tests make).
profile=${BUILD_PROFILE:-release}
case "$profile" in dev) dir=debug ;; *) dir=$profile ;; esac

# The binary: linked statically, so that the image needs no libc; stripped. The flags go to the
# final link only (cargo rustc), so the dependencies are those of any other build of the profile
# (and build scripts and proc macros stay dynamic, as they must).
cargo rustc --quiet --locked --profile "$profile" --bin regsweep --manifest-path "$top/Cargo.toml" \
  -- -C target-feature=+crt-static -C strip=symbols
bin="${CARGO_TARGET_DIR:-$top/target}/$dir/regsweep"
case "$(ldd "$bin" 2>&1 || true)" in
  *"statically linked"* | *"not a dynamic executable"*) ;;
  *) echo "build.sh: $bin is not static" >&2; exit 1 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$work/oci/blobs/sha256"
install -m 0755 "$bin" "$root/usr/local/bin/regsweep"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
else
  echo "build.sh: no /etc/ssl/certs/ca-certificates.crt (Debian: ca-certificates): the image trusts no CA" >&2
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\nregsweep:x:65532:65532:regsweep:/tmp:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nregsweep:x:65532:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"
chmod 1777 "$root/tmp"
chmod 0755 "$root" "$root/usr" "$root/usr/local" "$root/usr/local/bin" "$root/etc" "$root/etc/ssl" "$root/etc/ssl/certs"

# One layer: a tar of the root, owned by root, dated like the commit, in name order.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" --format=gnu \
  -C "$root" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -9 "$work/layer.tar"
blob() { # FILE -> digest hex, the file moved into the layout
  local hex
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  mv "$1" "$work/oci/blobs/sha256/$hex"
  echo "$hex"
}
size() { stat -c %s "$work/oci/blobs/sha256/$1"; }
layer=$(blob "$work/layer.tar.gz")

labels=$(printf '"org.opencontainers.image.title":"regsweep","org.opencontainers.image.description":"Fast, safe retention and garbage collection for CNCF Distribution registries","org.opencontainers.image.version":"%s","org.opencontainers.image.revision":"%s","org.opencontainers.image.created":"%s","org.opencontainers.image.licenses":"Apache-2.0"' \
  "$version" "$revision" "$created")
# Where the source lives, when the builder says (IMAGE_SOURCE=https://...).
if [ -n "${IMAGE_SOURCE:-}" ]; then labels="$labels,\"org.opencontainers.image.source\":\"$IMAGE_SOURCE\""; fi
printf '{"created":"%s","architecture":"amd64","os":"linux","config":{"User":"65532:65532","Env":["PATH=/usr/local/bin","HOME=/tmp","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"Entrypoint":["/usr/local/bin/regsweep"],"Cmd":["--help"],"WorkingDir":"/tmp","Labels":{%s}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"contrib/container/build.sh"}]}' \
  "$created" "$labels" "$diff_id" "$created" >"$work/config.json"
config=$(blob "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}],"annotations":{%s}}' \
  "$config" "$(size "$config")" "$layer" "$(size "$layer")" "$labels" >"$work/manifest.json"
manifest=$(blob "$work/manifest.json")
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
# The name: for docker load (io.containerd.image.name) and for podman load and skopeo
# (org.opencontainers.image.ref.name).
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest" "$(size "$manifest")" "$name" "$name" >"$work/oci/index.json"
# docker load before Docker 25 reads the docker-archive manifest instead.
printf '[{"Config":"blobs/sha256/%s","RepoTags":["%s"],"Layers":["blobs/sha256/%s"]}]' \
  "$config" "$name" "$layer" >"$work/oci/manifest.json"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" --format=gnu -C "$work/oci" -cf "$out" .
echo "$out: $name, sha256:$manifest ($(du -h "$out" | cut -f1))"
