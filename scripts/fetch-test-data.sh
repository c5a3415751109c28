#!/usr/bin/env bash
# Make the real datasets the tests use available (idempotent; safe to run again):
#   - Fashion-MNIST: the Debian package dataset-fashion-mnist (gzipped IDX files under
#     /usr/share/datasets/fashion-mnist/), installed with apt-get when missing (needs root).
#   - CIFAR-10: ../shared/data/cifar10-jpeg.tar.gz (or $LEMO_SHARED_DATA/cifar10-jpeg.tar.gz)
#     unpacked into target/test-data/cifar10-jpeg (or $LEMO_TEST_DATA/cifar10-jpeg), atomically:
#     into a temporary folder that is renamed when complete.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="${LEMO_SHARED_DATA:-$root/../shared/data}"
cache="${LEMO_TEST_DATA:-$root/target/test-data}"

# Fashion-MNIST
fm=/usr/share/datasets/fashion-mnist
if [ ! -f "$fm/train-images-idx3-ubyte.gz" ]; then
    echo "fetch-test-data: installing dataset-fashion-mnist" >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
test -f "$fm/train-images-idx3-ubyte.gz" || { echo "fetch-test-data: Fashion-MNIST still missing" >&2; exit 1; }

# CIFAR-10 (JPEG image folders)
dest="$cache/cifar10-jpeg"
if [ ! -d "$dest/train" ]; then
    tarball="$shared/cifar10-jpeg.tar.gz"
    test -f "$tarball" || { echo "fetch-test-data: $tarball not found (set LEMO_SHARED_DATA)" >&2; exit 1; }
    mkdir -p "$cache"
    tmp="$(mktemp -d "$cache/.cifar10-jpeg.XXXXXX")"
    chmod 755 "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    echo "fetch-test-data: unpacking $tarball" >&2
    tar -xzf "$tarball" -C "$tmp"
    if ! mv -T "$tmp" "$dest" 2>/dev/null; then
        # another run finished first: keep its copy
        test -d "$dest/train" || { echo "fetch-test-data: cannot move into $dest" >&2; exit 1; }
    fi
    trap - EXIT
    rm -rf "$tmp"
fi
echo "fetch-test-data: Fashion-MNIST in $fm, CIFAR-10 JPEGs in $dest" >&2
