#!/usr/bin/env bash
# The benchmark (BENCHMARKS.md): builds in release with its own scratch path and the static
# Swift runtime (the form scripts/build-deb.sh and scripts/install.sh deploy), then runs
# `iomt-bench` (every section, side by side with its baseline, in one run) and prints
# the results table. Results also go to BENCHMARKS-results.json (quick: .build-bench/bench-quick.json).
#   scripts/bench.sh            full run (about 10 minutes on 2 cores)
#   scripts/bench.sh --quick    smoke run (small N, under ~3 minutes)
# Extra arguments are passed to `iomt-bench` (e.g. --only 2 --no-million).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in mosquitto swift; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is not installed (scripts/setup.sh installs what is needed)"; exit 1; }
done

swift build -c release --static-swift-stdlib --scratch-path .build-bench
bin=.build-bench/release
# A smoke run must not overwrite the results of the full run that BENCHMARKS.md quotes.
default_out=BENCHMARKS-results.json
for arg in "$@"; do [ "$arg" = "--quick" ] && default_out=.build-bench/bench-quick.json; done
out=${BENCH_OUT:-$default_out}
exec "$bin/iomt-bench" --out "$out" "$@"
