#!/usr/bin/env bash
# A stand-in for python:3.11-slim-bookworm where no registry can be reached (tests/e2e/test_container_image.py):
# Debian bookworm's own python3 (3.11) and its venv module, from the Debian mirror by debootstrap, imported into
# podman's storage as IMAGE. The machine's CA bundle is copied in and named by SSL_CERT_FILE and PIP_CERT when the
# machine sets them (a TLS-intercepting proxy to PyPI: uv and pip trust only their own roots otherwise).
# Usage (root, with debootstrap and podman): tools/container-base.sh [IMAGE]
set -euo pipefail
image=${1:-localhost/reportgen-base:3.11-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rootfs=$(mktemp -d /var/tmp/reportgen-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,netbase,tzdata \
  bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/*
changes=(--change 'CMD ["python3"]')
if [ -n "${SSL_CERT_FILE:-}" ] && [ -f "$SSL_CERT_FILE" ]; then
  cp "$SSL_CERT_FILE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  changes+=(--change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt')
  changes+=(--change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt')
fi
tar -C "$rootfs" -c . | podman import --quiet "${changes[@]}" - "$image" >/dev/null
echo "$image"
