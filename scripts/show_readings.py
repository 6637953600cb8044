#!/usr/bin/env python3
"""Demo viewer: reads `mosquitto_sub -F '%t %p'` lines and prints one short line per message."""
import json
import sys

NAMES = {150456: "SpO2", 149530: "PR", 150488: "PI", 150452: "pleth", 150021: "sys", 150022: "dia",
         150023: "MAP", 149546: "pulse", 150364: "temp"}

for line in sys.stdin:
    topic, _, payload = line.rstrip("\n").partition(" ")
    try:
        doc = json.loads(payload)
    except ValueError:
        print(f"broker> {topic} (not JSON, {len(payload)} bytes)", flush=True)
        continue
    if doc.get("schema") == "iomt-reading/1":
        parts = []
        for o in doc["observations"]:
            name = NAMES.get(o["mdc_code"], o.get("mdc_ref_id") or o["mdc_code"])
            if "samples" in o:
                parts.append(f"{name}[{len(o['samples'])} samples]")
            elif o.get("value") is None:
                parts.append(f"{name}=<{o.get('status')}>")
            else:
                parts.append(f"{name}={o['value']}{o['unit']}")
        mark = " backlog" if doc.get("backlog") else ""
        print(f"broker> reading {doc['device']['id']} #{doc['sequence']}{mark} {doc['measured_at']}: {' '.join(parts)}", flush=True)
    elif doc.get("schema") == "iomt-status/1":
        buf = doc.get("buffer", {})
        print(f"broker> status {doc['state']} buffered={buf.get('messages')} lost={doc.get('readings_lost')}", flush=True)
    elif doc.get("schema") == "iomt-alert/1":
        device = (doc.get("device") or {}).get("id", "-")
        print(f"broker> ALERT {doc['event']} {doc['rule']} ({doc['severity']}) {doc.get('patient_id') or '-'} {device}: {doc['summary']}", flush=True)
    elif doc.get("schema") == "iomt-gap/1":
        print(f"broker> GAP {doc['device_id']} #{doc['first_sequence']}-{doc['last_sequence']} ({doc['count']} lost: {doc['reason']})", flush=True)
    else:
        print(f"broker> {topic} {payload[:120]}", flush=True)
