#!/usr/bin/env python3
"""The baseline of the Bluetooth benchmark (BENCHMARKS.md, issue 5): Bumble's own host as central.

Connects to the given peripherals of a running virtual_world.py (H4 over TCP to one host port),
subscribes to Heart Rate Measurement 0x2A37 on each, measures the time from each peripheral's first
advertisement to its first notification, then counts notifications for --seconds and the CPU this
process used meanwhile (resource.getrusage). Prints one JSON object, the same shape as
`iomt-ble-bench`'s: {"host":"bumble","peripherals":N,"notifications":n,"seconds":s,
"per_second":r,"cpu_ms_per_1000":c,"adv_to_first_ms":[...]}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import sys
import time

from bumble import hci
from bumble.core import UUID
from bumble.device import Device, Peer
from bumble.transport import open_transport


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peripherals", required=True, help="comma-separated addresses")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    addresses = [a.strip().upper() for a in args.peripherals.split(",") if a.strip()]
    async with await open_transport(f"tcp-client:127.0.0.1:{args.port}") as transport:
        device = Device.with_hci("bench-central", hci.Address("C0:00:00:00:00:02"), transport.source, transport.sink)
        await device.power_on()
        first_advert: dict[str, float] = {}
        seen = asyncio.Event()

        def on_advertisement(advertisement) -> None:
            a = str(advertisement.address).split("/")[0].upper()
            if a not in first_advert:
                first_advert[a] = time.monotonic()
                seen.set()

        device.on("advertisement", on_advertisement)
        count = 0
        counting = False
        adv_to_first: list[float] = []
        for address in addresses:
            # Time from the first advertisement seen once we look for this peripheral.
            first_advert.clear()
            await device.start_scanning(active=False, filter_duplicates=False)
            while address not in first_advert:
                seen.clear()
                await asyncio.wait_for(seen.wait(), 10.0)
            await device.stop_scanning()
            connection = await device.connect(hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS),
                                              own_address_type=hci.OwnAddressType.RANDOM, timeout=10.0)
            peer = Peer(connection)
            await peer.request_mtu(247)
            await peer.discover_services()
            await peer.discover_characteristics()
            characteristic = peer.get_characteristics_by_uuid(UUID.from_16_bits(0x2A37))[0]
            got_first = asyncio.get_running_loop().create_future()

            def on_value(value: bytes, fut=got_first) -> None:
                nonlocal count
                if not fut.done():
                    fut.set_result(time.monotonic())
                if counting:
                    count += 1

            await peer.subscribe(characteristic, on_value, prefer_notify=True)
            t = await asyncio.wait_for(got_first, 10.0)
            adv_to_first.append((t - first_advert[address]) * 1000.0)
        cpu0, t0 = cpu_seconds(), time.monotonic()
        counting = True
        await asyncio.sleep(args.seconds)
        counting = False
        cpu1, t1 = cpu_seconds(), time.monotonic()
        print(json.dumps({
            "host": "bumble", "peripherals": len(addresses), "notifications": count, "seconds": t1 - t0,
            "per_second": count / (t1 - t0), "cpu_ms_per_1000": (cpu1 - cpu0) * 1000.0 / max(count, 1) * 1000.0,
            "adv_to_first_ms": adv_to_first,
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
