#!/usr/bin/env bash
# Install the system tools the `local` feature (the embedded llama.cpp architect) builds with,
# when missing (idempotent; safe to run again): cmake and a C++ compiler build llama.cpp from the
# source llama-cpp-sys-2 bundles, libclang lets bindgen read its headers. Debian's packages
# cmake, g++ and libclang-dev, through apt-get (needs root, or sudo).
set -euo pipefail

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
# bindgen finds libclang through LIBCLANG_PATH, else the usual library folders.
# (libclang-cpp, which a fresh Debian image may have, is not it), and needs clang's own headers.
if [ -z "${LIBCLANG_PATH:-}" ] && ! { compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null \
    && compgen -G "/usr/lib/llvm-*/lib/clang/*/include/stddef.h" >/dev/null; }; then
    missing+=(libclang-dev)
fi
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "install-build-deps: installing ${missing[*]} (for llama.cpp, the local architect)" >&2
sudo=""
if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-build-deps: ${missing[*]} missing and not root: install them (Debian: apt-get install ${missing[*]})" >&2
        exit 1
    fi
    sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
