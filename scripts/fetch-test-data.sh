#!/usr/bin/env bash
# Make the real datasets the tests use available (idempotent; safe to run again):
#   - Fashion-MNIST: the Debian package dataset-fashion-mnist (gzipped IDX files under
#     /usr/share/datasets/fashion-mnist/), installed with apt-get when missing (needs root).
#   - CIFAR-10: ../shared/data/cifar10-jpeg.tar.gz (or $LEMO_SHARED_DATA/cifar10-jpeg.tar.gz)
#     unpacked into target/test-data/cifar10-jpeg (or $LEMO_TEST_DATA/cifar10-jpeg), atomically:
#     into a temporary folder that is renamed when complete. Without that shared copy (any
#     machine outside this workplace), the binary version from its official address
#     (https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz, 162 MB, MD5-checked) through
#     lemo-train's downloader (`lemo data download cifar10`) into target/test-data/cifar-10 (or
#     $LEMO_TEST_DATA/cifar-10); the tests take whichever copy is there.
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

# CIFAR-10: the shared JPEG copy, else the binary version from its official address
dest="$cache/cifar10-jpeg"
binary="$cache/cifar-10"
tarball="$shared/cifar10-jpeg.tar.gz"
official="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
if [ -d "$dest/train" ]; then
    have="CIFAR-10 JPEGs in $dest"
elif [ -f "$tarball" ]; then
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
    have="CIFAR-10 JPEGs in $dest"
elif [ -d "$binary" ]; then
    have="CIFAR-10 (binary version) in $binary"
else
    echo "fetch-test-data: no shared CIFAR-10 copy ($tarball not found);" \
        "downloading the binary version from $official (162 MB, MD5-checked) into $binary" >&2
    mkdir -p "$cache"
    if ! (cd "$root" && cargo run --quiet -p lemo-cli -- data download cifar10 "$cache" >/dev/null); then
        cat >&2 <<EOF
fetch-test-data: cannot get CIFAR-10: there is no shared copy and the download failed (the
error is above: no network, or the lemo CLI did not build). Do one of these, then run
scripts/test again:
  - put the CIFAR-10 JPEG tarball at $tarball
    (or set LEMO_SHARED_DATA to the folder holding cifar10-jpeg.tar.gz; it holds
    train/<class>/*.jpg and test/<class>/*.jpg), or
  - on a machine with network, download $official
    (MD5 c32a1d4ab5d03f1284b67883e8d87530) and put it at
    $cache/cifar-10-binary.tar.gz
    (or set LEMO_TEST_DATA to the folder holding it): it is checked and unpacked, no network needed.
EOF
        exit 1
    fi
    have="CIFAR-10 (binary version) in $binary"
fi
echo "fetch-test-data: Fashion-MNIST in $fm, $have" >&2
