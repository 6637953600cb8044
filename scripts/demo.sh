#!/usr/bin/env bash
# The demo: a local mosquitto on loopback, the agent with simulated devices on the embedded
# default configuration, and a subscriber window showing what reaches the broker.
#   DEMO_SECONDS=30 make demo   stops by itself after 30 s (default: runs until Ctrl-C)
#   DEMO_PORT=1884 make demo    broker port (default: 1883, or a free one if that is taken)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
swift build --product iomt-agent
BIN="$(swift build --show-bin-path)/iomt-agent"

mkdir -p run
port="${DEMO_PORT:-1883}"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  echo "demo: port ${DEMO_PORT:-1883} is taken, using $port"
fi
cat > run/mosquitto.conf <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
CONF

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

mosquitto -c run/mosquitto.conf 2>run/mosquitto.log & pids+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

echo "demo: broker on 127.0.0.1:$port; lines starting 'broker>' are what a subscriber on iomt/# receives"
mosquitto_sub -h 127.0.0.1 -p "$port" -V 5 -t 'iomt/#' -F '%t %p' | python3 -u scripts/show_readings.py & pids+=($!)

"$BIN" run --demo --broker "mqtt://127.0.0.1:$port" & agent=$!; pids+=($agent)
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
  kill -TERM "$agent"
fi
wait "$agent" || true
