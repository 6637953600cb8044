#!/usr/bin/env python3
"""Validates virtual_world.py against Bumble's own host, end to end.

A Bumble central (a `Device` on an H4-over-TCP transport to one of the world's host ports)
connects to every simulated peripheral, subscribes, pairs with the secure thermometers, reads
notifications and indications, and reconnects to the dropper. Prints `PASS <check>` or
`FAIL <check>: why` per check and `ALL PASS` at the end; exits 0 only if every check passed.

  # against a running world (its ready file):
  .venv/bin/python scripts/ble/check_world.py --ready /tmp/world.json
  # or let it start a world with the default spec below:
  .venv/bin/python scripts/ble/check_world.py --spawn

Peripherals are picked by kind from the ready document and the spec (--spec-json, the same
spec the world was started with); with --spawn the spec is DEFAULT_SPEC.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import struct
import sys
import tempfile

from bumble import hci
from bumble.att import ATT_Error
from bumble.core import UUID
from bumble.device import Device, Peer
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport import open_transport

log = logging.getLogger("check_world")

DEFAULT_SPEC = {
    "hosts": 1,
    "peripherals": [
        {"name": "hr1", "kind": "heart-rate", "address": "F0:F1:F2:F3:F4:01", "serial": "HR-0001"},
        {"name": "therm-jw", "kind": "thermometer-secure", "address": "F0:F1:F2:F3:F4:02", "serial": "TH-0002"},
        {"name": "therm-pk", "kind": "thermometer-secure", "address": "F0:F1:F2:F3:F4:03",
         "io_capability": "display-only", "passkey": 123456},
        {"name": "therm-nc", "kind": "thermometer-secure", "address": "F0:F1:F2:F3:F4:06",
         "io_capability": "display-yes-no"},
        {"name": "therm-legacy", "kind": "thermometer-secure", "address": "F0:F1:F2:F3:F4:07", "legacy": True},
        {"name": "therm-priv", "kind": "thermometer-secure", "address": "F0:F1:F2:F3:F4:08", "privacy": True},
        {"name": "junk", "kind": "garbage", "address": "F0:F1:F2:F3:F4:04"},
        {"name": "drop", "kind": "dropper", "address": "F0:F1:F2:F3:F4:05", "drop_after": 3, "away_ms": 500},
        {"name": "gluco", "kind": "glucose-meter", "address": "F0:F1:F2:F3:F4:11", "serial": "GL-0011"},
    ],
}

HRM = UUID.from_16_bits(0x2A37)
TEMP = UUID.from_16_bits(0x2A1C)
SERIAL = UUID.from_16_bits(0x2A25)
BODY_SENSOR_LOCATION = UUID.from_16_bits(0x2A38)
GLUCOSE_MEASUREMENT = UUID.from_16_bits(0x2A18)
GLUCOSE_CONTEXT = UUID.from_16_bits(0x2A34)
GLUCOSE_FEATURE = UUID.from_16_bits(0x2A51)
RACP = UUID.from_16_bits(0x2A52)
INSUFFICIENT_ENCRYPTION = 0x0F


class CheckFailed(Exception):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def parse_heart_rate(value: bytes) -> int:
    """Heart Rate Measurement (HRS 3.1): flags, uint8/uint16 bpm, [energy], [RR...]."""
    expect(len(value) >= 2, f"heart rate measurement too short: {value.hex()}")
    flags = value[0]
    if flags & 0x01:
        expect(len(value) >= 3, "uint16 bpm truncated")
        bpm, offset = struct.unpack_from("<H", value, 1)[0], 3
    else:
        bpm, offset = value[1], 2
    if flags & 0x08:
        offset += 2
    if flags & 0x10:
        expect((len(value) - offset) % 2 == 0 and len(value) > offset, f"bad RR intervals: {value.hex()}")
    else:
        expect(len(value) == offset, f"trailing bytes: {value.hex()}")
    expect(30 <= bpm <= 220, f"implausible bpm {bpm}")
    return bpm


def parse_temperature(value: bytes) -> float:
    """Temperature Measurement (HTS 3.1): flags, IEEE-11073 FLOAT, [timestamp], [type]."""
    expect(len(value) >= 5, f"temperature measurement too short: {value.hex()}")
    raw = struct.unpack_from("<I", value, 1)[0]
    mantissa = raw & 0xFFFFFF
    if mantissa & 0x800000:
        mantissa -= 0x1000000
    exponent = raw >> 24
    if exponent & 0x80:
        exponent -= 0x100
    celsius = mantissa * 10.0 ** exponent
    expect(35.0 <= celsius <= 42.0, f"implausible temperature {celsius}")
    return celsius


def parse_glucose(value: bytes) -> tuple[int, float, bool]:
    """Glucose Measurement (GLS 3.106): flags, seq u16, base time 7, [offset s16], [SFLOAT + type/location],
    [status u16]. Returns (sequence, mg/dL, context follows)."""
    expect(len(value) >= 10, f"glucose measurement too short: {value.hex()}")
    flags = value[0]
    sequence = struct.unpack_from("<H", value, 1)[0]
    offset = 10 + (2 if flags & 0x01 else 0)
    expect(flags & 0x02 != 0 and len(value) >= offset + 3, f"no concentration: {value.hex()}")
    raw = struct.unpack_from("<H", value, offset)[0]
    mantissa, exponent = raw & 0x0FFF, raw >> 12
    mantissa -= 0x1000 if mantissa & 0x800 else 0
    exponent -= 0x10 if exponent & 0x8 else 0
    scale = 18016.0 if flags & 0x04 else 100000.0  # mol/L -> mg/dL (180.16 g/mol), kg/L -> mg/dL
    mgdl = mantissa * 10.0 ** exponent * scale
    expect(20 <= mgdl <= 600, f"implausible glucose {mgdl} mg/dL")
    return sequence, mgdl, bool(flags & 0x10)


class CentralDelegate(PairingDelegate):
    def __init__(self, io_capability, passkey: int | None):
        super().__init__(io_capability=io_capability)
        self.passkey = passkey

    async def get_number(self) -> int | None:
        return self.passkey

    async def compare_numbers(self, number: int, digits: int) -> bool:
        return True


class Checker:
    def __init__(self, device: Device, ready: dict, spec: dict, control=None):
        self.device = device
        self.control = control  # async (command dict) -> answer dict, with --spawn
        self.ready = ready
        self.spec = spec
        self.failures: list[str] = []

    def address(self, name: str) -> hci.Address:
        return hci.Address(self.ready["peripherals"][name]["address"], hci.Address.RANDOM_DEVICE_ADDRESS)

    def of_kind(self, kind: str) -> list[dict]:
        return [p for p in self.spec.get("peripherals", []) if p["kind"] == kind]

    async def run(self, label: str, coroutine, timeout: float = 20.0) -> None:
        try:
            await asyncio.wait_for(coroutine, timeout)
            print(f"PASS {label}", flush=True)
        except Exception as error:  # CheckFailed, timeouts, Bumble errors
            self.failures.append(label)
            print(f"FAIL {label}: {type(error).__name__}: {error}", flush=True)

    async def connect(self, name: str):
        connection = await self.device.connect(self.address(name), own_address_type=hci.OwnAddressType.RANDOM,
                                               timeout=10.0)
        peer = Peer(connection)
        await peer.discover_services()
        await peer.discover_characteristics()
        return connection, peer

    async def collect(self, peer: Peer, uuid: UUID, count: int, indicate: bool = False) -> list[bytes]:
        characteristics = peer.get_characteristics_by_uuid(uuid)
        expect(len(characteristics) == 1, f"{uuid} found {len(characteristics)} times")
        received: list[bytes] = []
        enough = asyncio.get_running_loop().create_future()

        def on_value(value: bytes) -> None:
            received.append(bytes(value))
            if len(received) >= count and not enough.done():
                enough.set_result(None)

        await peer.subscribe(characteristics[0], on_value, prefer_notify=not indicate)
        await asyncio.wait_for(enough, 10.0)
        return received

    async def wait_advertising(self, addresses: set[str], timeout: float = 10.0) -> None:
        seen = asyncio.get_running_loop().create_future()

        def on_advertisement(advertisement) -> None:
            if str(advertisement.address).split("/")[0].upper() in addresses and not seen.done():
                seen.set_result(None)

        self.device.on("advertisement", on_advertisement)
        await self.device.start_scanning(active=False, filter_duplicates=False)
        try:
            await asyncio.wait_for(seen, timeout)
        finally:
            self.device.remove_listener("advertisement", on_advertisement)
            await self.device.stop_scanning()

    async def disconnect(self, connection) -> None:
        if connection.handle in self.device.connections:
            await connection.disconnect()

    # Checks --------------------------------------------------------------------------------------
    async def heart_rate(self, spec: dict) -> None:
        connection, peer = await self.connect(spec["name"])
        serial = await peer.read_characteristics_by_uuid(SERIAL)
        expected_serial = spec.get("serial", f"SN-{spec['name']}")
        expect(serial == [expected_serial.encode()], f"serial {serial}")
        location = await peer.read_characteristics_by_uuid(BODY_SENSOR_LOCATION)
        expect(location == [b"\x01"], f"body sensor location {location}")
        values = await self.collect(peer, HRM, 5)
        for value in values:
            parse_heart_rate(value)
        expect(any(v[0] & 0x10 for v in values), "no measurement with RR intervals")
        expect(any(v[0] & 0x06 == 0x06 for v in values), "no measurement with sensor contact")
        await self.disconnect(connection)

    async def thermometer(self, spec: dict) -> None:
        io = spec.get("io_capability", "no-input-no-output")
        central_io = {
            "no-input-no-output": PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT,
            "display-only": PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY,
            "display-yes-no": PairingDelegate.IoCapability.DISPLAY_OUTPUT_AND_YES_NO_INPUT,
        }[io]
        legacy = bool(spec.get("legacy", False))
        self.device.pairing_config_factory = lambda _c: PairingConfig(
            sc=not legacy, mitm=io != "no-input-no-output", bonding=True,
            delegate=CentralDelegate(central_io, spec.get("passkey")))
        connection, peer = await self.connect(spec["name"])
        characteristic = peer.get_characteristics_by_uuid(TEMP)
        expect(len(characteristic) == 1, "no temperature measurement characteristic")
        try:
            await peer.subscribe(characteristic[0], lambda _v: None, prefer_notify=False)
            raise CheckFailed("CCCD write succeeded without encryption")
        except ATT_Error as error:
            expect(error.error_code == INSUFFICIENT_ENCRYPTION, f"ATT error 0x{error.error_code:02X}, wanted 0x0F")
        await connection.pair()
        expect(connection.is_encrypted, "not encrypted after pairing")
        if spec.get("privacy"):
            irks = [keys.irk.value.hex() for _n, keys in await self.device.keystore.get_all() if keys.irk]
            expect(self.ready["peripherals"][spec["name"]]["irk"] in irks, f"IRK not distributed: {irks}")
        for value in await self.collect(peer, TEMP, 3, indicate=True):
            parse_temperature(value)
        await self.disconnect(connection)
        # A later connection re-encrypts with the stored key (no new pairing).
        connection, peer = await self.connect(spec["name"])
        await connection.encrypt()
        expect(connection.is_encrypted, "not encrypted with the stored key")
        for value in await self.collect(peer, TEMP, 2, indicate=True):
            parse_temperature(value)
        await self.disconnect(connection)
        if spec.get("privacy") and self.control is not None:
            # A new resolvable private address: the bond still applies (found through the IRK).
            answer = await self.control({"cmd": "rotate-address", "peripheral": spec["name"]})
            expect(answer.get("ok") is True, f"rotate-address: {answer}")
            self.ready["peripherals"][spec["name"]]["address"] = answer["address"]
            # Connect only once the new address is on the air (the rotation restarts advertising).
            # Bumble's central reports an address its keystore resolves as the identity address.
            await self.wait_advertising({answer["address"].upper(),
                                         self.ready["peripherals"][spec["name"]]["identity_address"].upper()})
            connection, peer = await self.connect(spec["name"])
            await connection.encrypt()
            expect(connection.is_encrypted, "not encrypted with the stored key after the address rotated")
            for value in await self.collect(peer, TEMP, 2, indicate=True):
                parse_temperature(value)
            await self.disconnect(connection)
            status = await self.control({"cmd": "status"})
            expect(len(status["peripherals"][spec["name"]]["bonded"]) == 1, f"bonds: {status}")

    async def garbage(self, spec: dict) -> None:
        connection, peer = await self.connect(spec["name"])
        values = await self.collect(peer, HRM, 5)
        for value in values:
            parse_heart_rate(value)
        expect(connection.handle in self.device.connections, "link lost after the garbage")
        await self.disconnect(connection)

    async def dropper(self, spec: dict) -> None:
        drop_after = int(spec.get("drop_after", 5))
        connection, peer = await self.connect(spec["name"])
        gone = asyncio.get_running_loop().create_future()
        connection.on("disconnection", lambda reason: gone.done() or gone.set_result(reason))
        values = await self.collect(peer, HRM, drop_after)
        reason = await asyncio.wait_for(gone, 10.0)
        expect(reason == 0x08, f"disconnection reason 0x{reason:02X}, wanted 0x08")
        expect(len(values) == drop_after, f"{len(values)} notifications before the drop")
        # It comes back after away_ms: connect again (the connection forms when it advertises).
        connection, peer = await self.connect(spec["name"])
        await self.collect(peer, HRM, 2)
        await self.disconnect(connection)


    async def glucose(self, spec: dict) -> None:
        """Stored records over the RACP: all, then >= a sequence number (none left), the count."""
        records = int(spec.get("records", 5))
        connection, peer = await self.connect(spec["name"])
        feature = await peer.read_characteristics_by_uuid(GLUCOSE_FEATURE)
        expect(len(feature) == 1 and len(feature[0]) == 2, f"glucose feature {feature}")
        measurements: list[bytes] = []
        contexts: list[bytes] = []
        responses: asyncio.Queue[bytes] = asyncio.Queue()
        for uuid, sink in ((GLUCOSE_MEASUREMENT, measurements), (GLUCOSE_CONTEXT, contexts)):
            (characteristic,) = peer.get_characteristics_by_uuid(uuid)
            await peer.subscribe(characteristic, lambda v, sink=sink: sink.append(bytes(v)), prefer_notify=True)
        (racp,) = peer.get_characteristics_by_uuid(RACP)
        await peer.subscribe(racp, lambda v: responses.put_nowait(bytes(v)), prefer_notify=False)

        async def ask(request: bytes) -> bytes:
            await peer.write_value(racp, request, with_response=True)
            return await asyncio.wait_for(responses.get(), 10.0)

        expect(await ask(bytes([0x01, 0x01])) == bytes([0x06, 0x00, 0x01, 0x01]), "report all: no success")
        parsed = [parse_glucose(m) for m in measurements]
        expect([p[0] for p in parsed] == list(range(1, records + 1)), f"sequences {[p[0] for p in parsed]}")
        flagged = [p[0] for p in parsed if p[2]]
        expect([struct.unpack_from("<H", c, 1)[0] for c in contexts] == flagged, f"contexts {[c.hex() for c in contexts]}")
        answer = await ask(bytes([0x01, 0x03, 0x01]) + struct.pack("<H", records + 1))
        expect(answer == bytes([0x06, 0x00, 0x01, 0x06]), f"report >= {records + 1}: {answer.hex()}, wanted no records")
        answer = await ask(bytes([0x04, 0x01]))
        expect(answer == bytes([0x05, 0x00]) + struct.pack("<H", records), f"number of records: {answer.hex()}")
        answer = await ask(bytes([0x01, 0x07]))
        expect(answer == bytes([0x06, 0x00, 0x01, 0x03]), f"invalid operator: {answer.hex()}")
        expect(len(measurements) == records, f"{len(measurements)} measurements in all")
        await self.disconnect(connection)


async def check(ready: dict, spec: dict, host_index: int, control=None) -> int:
    port = ready["hosts"][host_index]["port"]
    async with await open_transport(f"tcp-client:127.0.0.1:{port}") as transport:
        device = Device.with_hci("check-central", hci.Address("C0:00:00:00:00:01"), transport.source, transport.sink)
        await device.power_on()
        checker = Checker(device, ready, spec, control)
        for p in checker.of_kind("heart-rate"):
            await checker.run(f"heart-rate {p['name']}", checker.heart_rate(p))
        for p in checker.of_kind("thermometer-secure"):
            label = f"thermometer-secure {p['name']} ({p.get('io_capability', 'no-input-no-output')}"
            label += ", legacy" if p.get("legacy") else ""
            label += (", privacy, rotation)" if control else ", privacy)") if p.get("privacy") else ")"
            await checker.run(label, checker.thermometer(p), timeout=30.0)
        for p in checker.of_kind("garbage"):
            await checker.run(f"garbage {p['name']}", checker.garbage(p))
        for p in checker.of_kind("dropper"):
            await checker.run(f"dropper {p['name']}", checker.dropper(p), timeout=30.0)
        for p in checker.of_kind("glucose-meter"):
            await checker.run(f"glucose-meter {p['name']}", checker.glucose(p))
        if checker.failures:
            print(f"FAILED {len(checker.failures)}: {', '.join(checker.failures)}", flush=True)
            return 1
        print("ALL PASS", flush=True)
        return 0


async def spawn_world(spec: dict, ready_path: str) -> asyncio.subprocess.Process:
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "virtual_world.py")
    process = await asyncio.create_subprocess_exec(
        sys.executable, script, "--spec-json", json.dumps(spec), "--ready-file", ready_path,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    line = await asyncio.wait_for(process.stdout.readline(), 30.0)
    if line.strip() != b"READY":
        raise RuntimeError(f"virtual_world.py did not get ready: {line!r}")
    return process


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ready", help="ready file of a running virtual_world.py")
    parser.add_argument("--spec-json", help="the spec that world was started with (default: DEFAULT_SPEC)")
    parser.add_argument("--spawn", action="store_true", help="start a world with the spec and check it")
    parser.add_argument("--host", type=int, default=0, help="which host port to use")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.WARNING)
    spec = json.loads(args.spec_json) if args.spec_json else DEFAULT_SPEC
    if args.spawn:
        with tempfile.TemporaryDirectory(prefix="check-world-") as tmp:
            ready_path = os.path.join(tmp, "ready.json")
            process = await spawn_world(spec, ready_path)
            try:
                with open(ready_path) as f:
                    ready = json.load(f)

                async def control(command: dict) -> dict:
                    process.stdin.write((json.dumps(command) + "\n").encode())
                    await process.stdin.drain()
                    return json.loads(await asyncio.wait_for(process.stdout.readline(), 10.0))

                return await check(ready, spec, args.host, control)
            finally:
                process.stdin.close()  # EOF: the world quits
                try:
                    await asyncio.wait_for(process.wait(), 10.0)
                except asyncio.TimeoutError:
                    process.kill()
    if not args.ready:
        parser.error("--ready FILE or --spawn")
    with open(args.ready) as f:
        ready = json.load(f)
    return await check(ready, spec, args.host)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
