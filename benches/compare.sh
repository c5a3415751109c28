#!/usr/bin/env bash
# The ref-cnn (docs/performance.md) trained and run by lemo-train, PyTorch and Keras in the same
# run on this machine: R rounds, each running the three programs back to back (lemo-train's
# `bench_ref_cnn`, benches/ref_cnn_pytorch.py, benches/ref_cnn_keras.py), printing each round's
# three lines and lemo-train's ratios to the faster peer (training, inference at batch 256 and at
# batch 1). Compare only ratios measured in one run: the machine is shared and noisy. After the
# last round it prints each program's median over the rounds, the ratios of those medians and in
# how many rounds each ratio reached 1.2x (issue 12's targets): on a shared 2-core guest one
# round can swing by half, so the medians over several rounds are the figure to quote.
#
#   benches/compare.sh [ROUNDS]            # default 2 rounds; LEMO_BENCH_SECONDS bounds each part
#   benches/compare.sh --setup [ROUNDS]    # first create the Python environment (below)
#
# Python: $LEMO_BENCH_VENV (default ~/.cache/lemo-nade/bench-venv), a virtualenv outside the
# repository with CPU torch and tensorflow-cpu; `--setup` creates it with pip (about 1 GB of
# downloads). Without it the script says what is missing and stops.
set -euo pipefail
cd "$(dirname "$0")/.."

setup=0
if [ "${1:-}" = "--setup" ]; then
  setup=1
  shift
fi
rounds="${1:-2}"
case "$rounds" in
  '' | *[!0-9]* | 0) echo "compare.sh: ROUNDS must be a positive number, not '$rounds'" >&2; exit 2 ;;
esac
venv="${LEMO_BENCH_VENV:-$HOME/.cache/lemo-nade/bench-venv}"
python="$venv/bin/python"

if [ "$setup" = 1 ] && [ ! -x "$python" ]; then
  command -v python3 >/dev/null || { echo "compare.sh: python3 is not installed" >&2; exit 3; }
  echo "== creating $venv (CPU torch, tensorflow-cpu, keras)"
  python3 -m venv "$venv" || {
    echo "compare.sh: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
    exit 3
  }
  "$python" -m pip install --quiet --upgrade pip
  "$python" -m pip install --quiet --index-url https://download.pytorch.org/whl/cpu torch ||
    "$python" -m pip install --quiet torch
  "$python" -m pip install --quiet tensorflow-cpu keras
fi
if ! "$python" -c "import torch, keras, tensorflow" 2>/dev/null; then
  echo "compare.sh: no Python environment with torch, keras and tensorflow at $venv" >&2
  echo "  run: benches/compare.sh --setup    (or set LEMO_BENCH_VENV to one that has them)" >&2
  exit 3
fi

echo "== building bench_ref_cnn (release)"
cargo build --release --quiet --example bench_ref_cnn
target_dir="$(cargo metadata --format-version 1 --no-deps | "$python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
lemo="$target_dir/release/examples/bench_ref_cnn"

isa="$(grep -o -w -m1 'avx512f' /proc/cpuinfo 2>/dev/null || grep -o -w -m1 'avx2' /proc/cpuinfo 2>/dev/null || echo 'no AVX2')"
echo "== $(nproc) cores, ${isa}, LEMO_BENCH_SECONDS=${LEMO_BENCH_SECONDS:-20}, $rounds round(s)"

# Prints "train infer256 infer1" from a program's one line.
figures() {
  sed -n 's/.*train=\([0-9.]*\) infer256=\([0-9.]*\) infer1=\([0-9.]*\).*/\1 \2 \3/p' | tail -1
}

# Runs a program, shows its output on stderr and prints its figures. (Not `tee /dev/stderr`:
# that reopens stderr, and a log file it was redirected to is truncated by each program.)
measure() {
  local out
  out="$("$@")" || true
  printf '%s\n' "$out" >&2
  printf '%s\n' "$out" | figures
}

# One line per round: "lemo(3) pytorch(3) keras(3)" figures, for the summary.
all_rounds=""
for round in $(seq 1 "$rounds"); do
  echo "== round $round (load average $(cut -d' ' -f1 /proc/loadavg))"
  l="$(measure "$lemo")"
  p="$(measure "$python" benches/ref_cnn_pytorch.py)"
  # TensorFlow's start-up chatter on stderr is dropped; its one line is on stdout.
  k="$(measure sh -c '"$0" benches/ref_cnn_keras.py 2>/dev/null' "$python")"
  if [ -z "$l" ] || [ -z "$p" ] || [ -z "$k" ]; then
    echo "compare.sh: a program printed no figures (lemo '$l', pytorch '$p', keras '$k')" >&2
    exit 1
  fi
  all_rounds="$all_rounds$l $p $k"$'\n'
  "$python" - "$l" "$p" "$k" <<'EOF'
import sys
lemo, torch, keras = ([float(x) for x in a.split()] for a in sys.argv[1:4])
names = ["train", "infer256", "infer1"]
parts = []
for i, name in enumerate(names):
    peer = max(torch[i], keras[i])
    parts.append(f"{name}={lemo[i] / peer:.2f}x")
print("ratios (lemo-train / faster peer): " + " ".join(parts)
      + f"  [vs pytorch: {lemo[0] / torch[0]:.2f} {lemo[1] / torch[1]:.2f} {lemo[2] / torch[2]:.2f};"
      + f" vs keras: {lemo[0] / keras[0]:.2f} {lemo[1] / keras[1]:.2f} {lemo[2] / keras[2]:.2f}]")
EOF
done

# Medians over the rounds, ratios of the medians, rounds at 1.2x or more.
printf '%s' "$all_rounds" | "$python" -c '
import statistics
import sys
rows = [[float(x) for x in line.split()] for line in sys.stdin if line.strip()]
names = ["train", "infer256", "infer1"]
med = [statistics.median(r[i] for r in rows) for i in range(9)]
parts = []
for i, name in enumerate(names):
    ratio = med[i] / max(med[3 + i], med[6 + i])
    met = sum(r[i] / max(r[3 + i], r[6 + i]) >= 1.2 for r in rows)
    parts.append(f"{name}={ratio:.2f}x ({met}/{len(rows)} rounds >= 1.2x)")
fig = lambda i: " / ".join(f"{v:.0f}" for v in med[i:i + 3])
print(f"== medians over {len(rows)} round(s), train / infer256 / infer1 img/s: "
      f"lemo-train {fig(0)}; pytorch {fig(3)}; keras {fig(6)}")
print("median ratios (lemo-train / faster peer median): " + " ".join(parts))
'
