#!/usr/bin/env bash
# Builds a private podman setup under DIR and an image `regsweep-registry` holding the real
# docker-registry (no image pull is possible here): containers.conf and storage.conf of its own,
# so nothing global changes. With REGISTRY3 (a static registry 3.x binary), also an image
# `regsweep-registry3` laid out as `registry:3` is: its config at /etc/distribution/config.yml.
# Prints the environment to export. Usage: setup.sh DIR [REGISTRY3]
set -euo pipefail
dir=$1
mkdir -p "$dir/storage" "$dir/run" "$dir/rootfs/bin" "$dir/rootfs/etc/docker/registry" "$dir/rootfs/var/lib/registry" \
  "$dir/rootfs/lib/x86_64-linux-gnu" "$dir/rootfs/lib64" "$dir/rootfs/tmp"
cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = []
netns = "host"
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
CONF
cat >"$dir/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$dir/storage"
runroot = "$dir/run"
CONF
export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
r=$dir/rootfs
cp /bin/busybox "$r/bin/busybox"
ln -sf busybox "$r/bin/sh"
cp /usr/bin/docker-registry "$r/bin/registry"
cp /lib/x86_64-linux-gnu/libc.so.6 "$r/lib/x86_64-linux-gnu/"
cp /lib64/ld-linux-x86-64.so.2 "$r/lib64/"
cat >"$r/etc/docker/registry/config.yml" <<CONF
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: /var/lib/registry}
  delete: {enabled: true}
http: {addr: "127.0.0.1:5000"}
CONF
tar -C "$r" -cf "$dir/rootfs.tar" .
podman import -q --change 'CMD ["/bin/registry","serve","/etc/docker/registry/config.yml"]' "$dir/rootfs.tar" regsweep-registry >/dev/null
if [ -n "${2:-}" ]; then
  r3=$dir/rootfs3
  mkdir -p "$r3/bin" "$r3/etc/distribution" "$r3/var/lib/registry" "$r3/tmp"
  cp /bin/busybox "$r3/bin/busybox"
  ln -sf busybox "$r3/bin/sh"
  cp "$2" "$r3/bin/registry"
  cp "$r/etc/docker/registry/config.yml" "$r3/etc/distribution/config.yml"
  tar -C "$r3" -cf "$dir/rootfs3.tar" .
  podman import -q --change 'ENV OTEL_TRACES_EXPORTER=none' \
    --change 'CMD ["/bin/registry","serve","/etc/distribution/config.yml"]' "$dir/rootfs3.tar" regsweep-registry3 >/dev/null
fi
echo "CONTAINERS_CONF=$CONTAINERS_CONF"
echo "CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
