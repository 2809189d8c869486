#!/usr/bin/env bash
# Build the framebus image with podman on a host that reaches no image registry
# (docs/containers.md). Where one is reachable, plain `docker build -f deploy/Dockerfile .` does.
#   deploy/build-image.sh [TAG]            (default localhost/framebus)
# BASE=IMAGE builds on that image; without it the base is Debian 12 with python3, made here by
# debootstrap (~130 MB, a few minutes the first time, then kept as localhost/framebus-base).
# The base trusts the certificate authorities this host trusts, so that pip in the build
# reaches PyPI through the same TLS proxy, if any, as the host's own pip.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-localhost/framebus}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
base=${BASE:-localhost/framebus-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p build
need() {
    command -v "$1" >/dev/null || {
        echo "build-image: $1 is missing: apt-get install podman runc debootstrap (or run make test-deps)" >&2
        exit 2
    }
}
need podman
need runc

if [ -z "${BASE:-}" ] && ! podman image exists "$base"; then
    need debootstrap
    rootfs=build/image-base
    rm -rf "$rootfs"
    echo "build-image: making the base image with debootstrap from $mirror" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" >build/debootstrap.log \
        || { echo "build-image: debootstrap failed; the end of build/debootstrap.log:" >&2; tail -5 build/debootstrap.log >&2; exit 1; }
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null 2>&1  # its one warning is about the bundle itself
    fi
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
    # What slim images leave out: package lists and caches, documentation, translations.
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/{doc,man,info,locale}
    tar -C "$rootfs" -c . | podman import --quiet - "$base" >/dev/null
    rm -rf "$rootfs"
fi
# --format docker: OCI images have no HEALTHCHECK.
podman build --quiet --format docker --build-arg "BASE=$base" -t "$tag" -f deploy/Dockerfile .
