#!/usr/bin/env bash
# The Bluetooth benchmark (issue 5, BENCHMARKS.md): our host (`iomt-ble-bench`, release build)
# and Bumble's own host as the baseline (scripts/ble/bench_central.py), alternately against the
# same virtual world of heart-rate peripherals notifying every INTERVAL_MS, with 1 and with 4
# peripherals, REPS times each. Prints medians and our/baseline ratios; writes BENCHMARKS-ble.json.
#   scripts/ble-bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
reps=5; seconds=5; interval=${INTERVAL_MS:-5}
[ "${1:-}" = "--quick" ] && { reps=1; seconds=2; }
[ -x .venv/bin/python ] && .venv/bin/python -c "import bumble" 2>/dev/null || { echo "ble-bench: run scripts/setup.sh first"; exit 1; }
swift build -c release --scratch-path .build-bench --product iomt-ble-bench >/dev/null
bin=.build-bench/release/iomt-ble-bench
work=$(mktemp -d /tmp/iomt-ble-bench.XXXXXX)
peripherals=""
addrs=()
for i in 1 2 3 4; do
  a="F0:F1:F2:F3:F4:0$i"; addrs+=("$a")
  peripherals+="{\"name\":\"hr$i\",\"kind\":\"heart-rate\",\"address\":\"$a\",\"interval_ms\":$interval},"
done
spec="{\"hosts\":1,\"peripherals\":[${peripherals%,}]}"
# The world quits when its stdin closes: hold it open with a fifo we close at exit. It prints
# READY on stdout once every port listens and every peripheral advertises.
mkfifo "$work/stdin" "$work/stdout"
.venv/bin/python scripts/ble/virtual_world.py --spec-json "$spec" --ready-file "$work/ready.json" \
  <"$work/stdin" >"$work/stdout" 2>"$work/world.log" &
world=$!
exec 3>"$work/stdin" 4<"$work/stdout"
trap 'exec 3>&- 4<&-; kill $world 2>/dev/null; wait $world 2>/dev/null; rm -rf "$work"' EXIT
if ! read -r -t 60 line <&4 || [ "$line" != "READY" ]; then
  echo "ble-bench: the world did not get ready"; cat "$work/world.log"; exit 1
fi
port=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['hosts'][0]['port'])" "$work/ready.json")
one=${addrs[0]}; four=$(IFS=,; echo "${addrs[*]}")
: >"$work/results.jsonl"
for rep in $(seq 1 "$reps"); do
  for set in "$one" "$four"; do
    "$bin" --port "$port" --peripherals "$set" --seconds "$seconds" >>"$work/results.jsonl"
    .venv/bin/python scripts/ble/bench_central.py --port "$port" --peripherals "$set" --seconds "$seconds" >>"$work/results.jsonl"
  done
done
.venv/bin/python - "$work/results.jsonl" "$interval" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = {"interval_ms": float(sys.argv[2]), "runs": rows, "summary": {}}
print(f"peripherals notifying every {sys.argv[2]} ms; medians of {len(rows)//4} runs each")
print(f"{'peripherals':>11} {'host':>6} {'notif/s':>9} {'cpu ms/1000':>12} {'adv->1st ms':>12}")
for n in (1, 4):
    s = {}
    for host in ("iomt", "bumble"):
        r = [x for x in rows if x["host"] == host and x["peripherals"] == n]
        s[host] = {
            "per_second": statistics.median(x["per_second"] for x in r),
            "cpu_ms_per_1000": statistics.median(x["cpu_ms_per_1000"] for x in r),
            "adv_to_first_ms": statistics.median(v for x in r for v in x["adv_to_first_ms"]),
        }
        print(f"{n:>11} {host:>6} {s[host]['per_second']:>9.0f} {s[host]['cpu_ms_per_1000']:>12.1f} {s[host]['adv_to_first_ms']:>12.1f}")
    ratio = {k: s["iomt"][k] / s["bumble"][k] for k in s["iomt"]}
    s["ratio_iomt_over_bumble"] = ratio
    print(f"{n:>11} {'ratio':>6} {ratio['per_second']:>9.2f} {ratio['cpu_ms_per_1000']:>12.2f} {ratio['adv_to_first_ms']:>12.2f}")
    out["summary"][str(n)] = s
json.dump(out, open("BENCHMARKS-ble.json", "w"), indent=1)
PY
