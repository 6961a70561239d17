#!/usr/bin/env bash
# Builds every image the compose stack needs from Debian packages and this machine's Node.js, for
# machines that reach no image registry (`docker pull` fails) but do reach a Debian mirror:
#
#   local/debian:bookworm          debootstrap --variant=minbase bookworm + docker import  (kept)
#   local/node:<version>-bookworm  that + the host's node binary and npm                  (kept)
#   local/idsync-redis:7           that Debian + apt-get install redis-server              (kept)
#   $IDSYNC_IMAGE                  ./Dockerfile with BASE_IMAGE=local/node:...              (rebuilt;
#                                  Docker's layer cache makes an unchanged rebuild a few seconds)
#
# "kept": built only when the tag does not exist yet (--rebuild-base rebuilds them).
# Needs root (debootstrap), a Docker engine, and debootstrap (installed with apt-get when missing).
#
# Environment: IDSYNC_IMAGE (default local/idsync:latest), IDSYNC_REDIS_IMAGE (local/idsync-redis:7),
# DEBIAN_MIRROR (http://deb.debian.org/debian), DEBIAN_SECURITY_MIRROR
# (http://deb.debian.org/debian-security).
#
# Why the host's node and not a .deb: Node 20 is not in Debian bookworm (it has 18), and here
# `apt-get download nodejs` finds no source for the installed nodesource 20.x package (apt only
# knows it from dpkg's status). dpkg-repack would rebuild the .deb, but that package Depends on
# python3 (~30 MB more in every image). The node binary needs only libc, libstdc++ and libgcc,
# which minbase has; npm is plain JavaScript.
set -euo pipefail
cd "$(dirname "$0")/.."

IDSYNC_IMAGE="${IDSYNC_IMAGE:-local/idsync:latest}"
IDSYNC_REDIS_IMAGE="${IDSYNC_REDIS_IMAGE:-local/idsync-redis:7}"
DEBIAN_IMAGE="local/debian:bookworm"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
rebuild_base=0
[ "${1:-}" = "--rebuild-base" ] && rebuild_base=1
# Debian's docker.io has no buildx plugin: use the classic builder, quietly.
export DOCKER_BUILDKIT=0

say() { echo "[images] $*"; }
scratch=()
trap 'rm -rf "${scratch[@]}"' EXIT
has_image() { [ "$rebuild_base" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }
# The classic builder's output only when a build fails (it prints a deprecation notice every time).
docker_build() {
  local log
  log="$(mktemp)"
  scratch+=("$log")
  docker build --force-rm "$@" >"$log" 2>&1 && return 0
  grep -v -e 'DEPRECATED: The legacy builder' -e 'BuildKit is currently disabled' -e 'environment-variable\.$' "$log" | tail -40 >&2
  return 1
}
timed() {
  local label="$1" start=$SECONDS
  shift
  "$@"
  say "$label: $((SECONDS - start)) s"
}

docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
  echo "[images] no Docker engine answers (docker version failed); start dockerd first" >&2
  exit 2
}

build_debian() {
  command -v debootstrap >/dev/null 2>&1 || {
    say "installing debootstrap with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  local rootfs
  rootfs="$(mktemp -d /var/tmp/idsync-rootfs.XXXXXX)"
  scratch+=("$rootfs" "$rootfs.log")
  say "debootstrap --variant=minbase bookworm from $DEBIAN_MIRROR"
  debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$rootfs.log" 2>&1 || {
    tail -20 "$rootfs.log" >&2
    return 1
  }
  # Updates and security fixes too, not only the release as debootstrap left it.
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb $DEBIAN_SECURITY_MIRROR bookworm-security main
EOF
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
}

build_node_base() {
  local node npm context
  node="$(readlink -f "$(command -v node)")"
  npm="$(npm root -g)/npm"
  [ -f "$npm/bin/npm-cli.js" ] || { echo "[images] npm not found at $npm" >&2; return 1; }
  context="$(mktemp -d /var/tmp/idsync-node-base.XXXXXX)"
  scratch+=("$context")
  cp "$node" "$context/node"
  cp -a "$npm" "$context/npm"
  cp docker/node-base.Dockerfile "$context/Dockerfile"
  # Where this machine's Node or npm trusts extra CAs (a TLS-inspecting proxy in front of the npm
  # registry, say), the base trusts them too, or `npm ci` inside the build fails with
  # SELF_SIGNED_CERT_IN_CHAIN: NODE_EXTRA_CA_CERTS, else npm's `cafile` setting.
  local ca="${NODE_EXTRA_CA_CERTS:-}"
  [ -n "$ca" ] || ca="$(npm config get cafile 2>/dev/null || true)"
  if [ -n "$ca" ] && [ -f "$ca" ]; then
    say "the node base trusts this machine's extra CAs too ($ca)"
    cp "$ca" "$context/extra-ca.pem"
  else
    : >"$context/extra-ca.pem"
  fi
  docker_build --build-arg "BASE_IMAGE=$DEBIAN_IMAGE" -t "$NODE_IMAGE" "$context"
}

node_version="$(node -p 'process.versions.node')"
case "$node_version" in
  2[0-9].*) ;;
  *) echo "[images] this machine's node is $node_version; the image needs Node 20 or later" >&2; exit 2 ;;
esac
NODE_IMAGE="local/node:${node_version}-bookworm"

if has_image "$DEBIAN_IMAGE"; then say "$DEBIAN_IMAGE exists"; else timed "$DEBIAN_IMAGE" build_debian; fi
if has_image "$NODE_IMAGE"; then say "$NODE_IMAGE exists"; else timed "$NODE_IMAGE (host node $node_version)" build_node_base; fi
if has_image "$IDSYNC_REDIS_IMAGE"; then
  say "$IDSYNC_REDIS_IMAGE exists"
else
  timed "$IDSYNC_REDIS_IMAGE" docker_build --build-arg "BASE_IMAGE=$DEBIAN_IMAGE" -t "$IDSYNC_REDIS_IMAGE" -f docker/redis.Dockerfile docker
fi
previous="$(docker image inspect -f '{{.Id}}' "$IDSYNC_IMAGE" 2>/dev/null || true)"
timed "$IDSYNC_IMAGE" docker_build --build-arg "BASE_IMAGE=$NODE_IMAGE" -t "$IDSYNC_IMAGE" .
# The image this build replaced, now untagged (kept if a container still uses it).
current="$(docker image inspect -f '{{.Id}}' "$IDSYNC_IMAGE")"
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then docker rmi "$previous" >/dev/null 2>&1 || true; fi
say "done: IDSYNC_IMAGE=$IDSYNC_IMAGE IDSYNC_REDIS_IMAGE=$IDSYNC_REDIS_IMAGE (base $NODE_IMAGE)"
