#!/usr/bin/env bash
# Builds berth's container image from the project's Dockerfile with podman, tagged
# localhost/berth:test, with no registry: the base images are made from Debian's packages (the
# host's Debian release, so the host's release build links the same libraries), and the binary
# is the host's release build (the Dockerfile's BINARY=context). The last line printed is the
# image reference.
#
#   bash tests/image.sh            build (installs podman, runc and debootstrap from Debian once)
#   bash tests/image.sh podman ... run podman as the tests do (runc, cgroupfs, no default ulimits)
#
# Exits 77, saying why, when podman cannot run containers on this machine; never with a fake
# image. The bases are cached under BERTH_CACHE_ROOT (default ~/.cache/berth)/image-bases.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=localhost/berth:test
ROOT=${BERTH_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}
SKIP=77

log() { printf 'image: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# crun (podman's default runtime) refuses this machine's cgroup mode and podman's default
# ulimits, so podman runs runc with cgroupfs, and a containers.conf without default ulimits
podman_() {
  local conf=$ROOT/image-bases/containers.conf
  if [ ! -f "$conf" ]; then
    mkdir -p "$(dirname "$conf")"
    printf '[containers]\ndefault_ulimits = []\n' >"$conf"
  fi
  CONTAINERS_CONF=$conf podman --runtime /usr/bin/runc --cgroup-manager=cgroupfs "$@"
}

if [ "${1:-}" = podman ]; then shift; podman_ "$@"; exit; fi

install_packages() {
  local p missing=()
  for p in podman runc debootstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian (once)"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if ! install_packages; then
  log "skipped: podman, runc and debootstrap could not be installed from Debian"; exit $SKIP
fi
release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [ -z "$release" ] || [ ! -f /etc/debian_version ]; then
  log "skipped: the bases are made with debootstrap from the host's Debian release, and this host is not Debian"
  exit $SKIP
fi
if ! why=$(podman_ info 2>&1 >/dev/null); then
  log "skipped: podman cannot run here: ${why##*$'\n'}"; exit $SKIP
fi

# Two bases from the host's Debian release, made once per point release:
#   builder  debootstrap's minimal system with libssl3, ca-certificates and tzdata: the build
#            stage the Dockerfile takes berth's libraries and time zone data from
#   runtime  what distroless' static image holds, from the same tree: the users root and
#            nonroot (65532), the CA certificate bundle, /tmp and nonroot's home
bases=$ROOT/image-bases/debian-$release-$(cat /etc/debian_version)
make_bases() {
  local tmp=$bases.tmp
  as_root rm -rf "$tmp"; mkdir -p "$tmp"
  log "making the base images from Debian $release's packages with debootstrap (once, about a minute)"
  as_root debootstrap --variant=minbase --include=ca-certificates,tzdata,libssl3 \
    "$release" "$tmp/builder" http://deb.debian.org/debian >"$tmp/debootstrap.log" 2>&1 \
    || { tail -20 "$tmp/debootstrap.log" >&2; return 1; }
  local rt=$tmp/runtime
  mkdir -p "$rt/etc/ssl/certs" "$rt/tmp" "$rt/home/nonroot" "$rt/root"
  cp "$tmp/builder/etc/ssl/certs/ca-certificates.crt" "$rt/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rt/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rt/etc/group"
  chmod 1777 "$rt/tmp"; chmod 700 "$rt/home/nonroot" "$rt/root"
  as_root chown 65532:65532 "$rt/home/nonroot"
  as_root tar -C "$tmp/builder" -cf "$tmp/builder.tar" .
  as_root tar -C "$rt" -cf "$tmp/runtime.tar" .
  as_root rm -rf "$tmp/builder" "$rt"
  mv "$tmp" "$bases"
}
[ -f "$bases/runtime.tar" ] || make_bases
builder=localhost/berth-base-builder:$release
runtime=localhost/berth-base-runtime:$release
for base in builder runtime; do
  ref=${!base}
  # an image made from an older tarball is replaced
  if [ "$(podman_ image inspect --format '{{index .Labels "berth.dev/base"}}' "$ref" 2>/dev/null)" != "$bases" ]; then
    podman_ import --change "LABEL berth.dev/base=$bases" "$bases/$base.tar" "$ref" >/dev/null
  fi
done

if ! why=$(podman_ run --rm --network none "$builder" /bin/true 2>&1); then
  log "skipped: podman cannot run a container here: ${why##*$'\n'}"; exit $SKIP
fi

# the binary: the host's release build, on the same Debian release as the bases
log "cargo build --release --bin berth"
cargo build --release --locked --bin berth >&2
log "podman build -t $IMAGE (BUILDER=$builder, RUNTIME=$runtime, BINARY=context)"
podman_ build --quiet --build-arg "BUILDER=$builder" --build-arg "RUNTIME=$runtime" \
  --build-arg BINARY=context --tag "$IMAGE" . >/dev/null
# the build stages' images are not kept: only the image and its bases stay in podman's storage
podman_ image prune --force >/dev/null
size=$(podman_ image inspect --format '{{.Size}}' "$IMAGE")
log "built $IMAGE: $((size / 1024 / 1024)) MiB"
echo "$IMAGE"
