#!/usr/bin/env bash
# Runs every test. Tests start their own mosquitto brokers on loopback (free ports), their own
# child processes and temp dirs, and stop them; nothing needs to run beforehand.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export IOMT_REPO_ROOT="$PWD"
swift build --build-tests
# Swift Testing runs suites in parallel; the machine has 2 cores, tests are sized for that.
swift test --skip-build "$@"
