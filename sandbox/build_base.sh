#!/bin/sh
# Build the sandbox base image offline from Debian packages, with no container registry:
# a minimal Debian bookworm root with python3 and numpy, imported as a Docker image.
#
#   sandbox/build_base.sh [IMAGE]        (default IMAGE: elm-sandbox-base:bookworm)
#
# Needs root, debootstrap and a reachable Debian mirror (ELM_DEBIAN_MIRROR overrides it).
set -eu

IMAGE="${1:-elm-sandbox-base:bookworm}"
MIRROR="${ELM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm

ROOTFS="$(mktemp -d "${TMPDIR:-/var/tmp}/elm-sandbox-rootfs.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT

echo "build_base: debootstrap $SUITE (minbase + python3, python3-numpy) from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-numpy "$SUITE" "$ROOTFS" "$MIRROR"

# Only the Python runtime is needed at run time: drop package caches, docs and locales.
rm -rf "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/var/log/*
find "$ROOTFS"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +

echo "build_base: importing as $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$IMAGE"
echo "build_base: done: $IMAGE"
