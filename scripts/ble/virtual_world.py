#!/usr/bin/env python3
"""A virtual Bluetooth LE world for the integration tests of our own BLE host.

One process, one `bumble.link.LocalLink`, several Bumble 0.0.236 virtual controllers on it:
  * N "host" controllers, each served as H4 over TCP on 127.0.0.1 (port 0, one client at a
    time, each client with its own H4 parser), for the host under test;
  * one controller per simulated peripheral, driven by a Bumble `Device` (host + GATT server).

See scripts/ble/README.md for the spec format, the control commands and the quirks.
Logs go to stderr; stdout carries only `READY` and the JSON answers to control commands.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tty
import calendar
import time
import signal
import struct
import sys
from typing import Any

from bumble import att, hci, ll, smp
from bumble.controller import Controller
from bumble.device import AdvertisingType, Device, DeviceConfiguration
from bumble.gatt import (
    GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
    Characteristic,
    CharacteristicValue,
    Descriptor,
    Service,
)
from bumble.link import LocalLink
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport.common import PacketParser

log = logging.getLogger("virtual_world")

# Assigned numbers (Bluetooth SIG Assigned Numbers, 16-bit UUIDs).
HEART_RATE_SERVICE = 0x180D
HEART_RATE_MEASUREMENT = 0x2A37
BODY_SENSOR_LOCATION = 0x2A38
HEALTH_THERMOMETER_SERVICE = 0x1809
TEMPERATURE_MEASUREMENT = 0x2A1C
DEVICE_INFORMATION_SERVICE = 0x180A
MANUFACTURER_NAME = 0x2A29
MODEL_NUMBER = 0x2A24
SERIAL_NUMBER = 0x2A25
BATTERY_SERVICE = 0x180F
BATTERY_LEVEL = 0x2A19
GLUCOSE_SERVICE = 0x1808
GLUCOSE_MEASUREMENT = 0x2A18
GLUCOSE_MEASUREMENT_CONTEXT = 0x2A34
GLUCOSE_FEATURE = 0x2A51
RECORD_ACCESS_CONTROL_POINT = 0x2A52

# RACP (GSS Record Access Control Point; reference ble-health-profiles.md 6.3).
RACP_REPORT, RACP_DELETE, RACP_ABORT, RACP_REPORT_NUMBER, RACP_NUMBER_RESPONSE, RACP_RESPONSE = 1, 2, 3, 4, 5, 6
RACP_NULL, RACP_ALL, RACP_LE, RACP_GE, RACP_RANGE, RACP_FIRST, RACP_LAST = 0, 1, 2, 3, 4, 5, 6
RACP_SUCCESS, RACP_OPCODE_NOT_SUPPORTED, RACP_INVALID_OPERATOR, RACP_OPERATOR_NOT_SUPPORTED = 1, 2, 3, 4
RACP_INVALID_OPERAND, RACP_NO_RECORDS, RACP_ABORT_UNSUCCESSFUL, RACP_NOT_COMPLETED, RACP_OPERAND_NOT_SUPPORTED = 5, 6, 7, 8, 9
# ATT errors a glucose server answers an RACP write with (reference 6.4): GLS 1.0 used the
# application range, newer specs the common profile codes.
ATT_ERRORS = {
    "current": {"busy": 0xFE, "cccd": 0xFD},   # procedure already in progress, CCCD improperly configured
    "gls-1.0": {"busy": 0x80, "cccd": 0x81},
}

# Reason codes (Core v5.4 Vol 1 Part F).
CONNECTION_TIMEOUT = 0x08
REMOTE_USER_TERMINATED = 0x13
UNKNOWN_CONNECTION_IDENTIFIER = 0x02
COMMAND_DISALLOWED = 0x0C

KINDS = ("heart-rate", "thermometer-secure", "garbage", "dropper", "sig-profile", "glucose-meter", "broadcaster")
GARBAGE_ALL = ["truncated-notification", "unknown-opcode", "unknown-handle", "unknown-cid", "bad-smp"]


def uuid16(value: int) -> str:
    return f"{value:04X}"


# ---------------------------------------------------------------------------------------------
# Host controllers: a Bumble Controller with a saner reset, served on its own TCP port.
# ---------------------------------------------------------------------------------------------
class WorldController(Controller):
    """The stock virtual controller with the state a real controller drops on HCI_Reset.

    Stock 0.0.236 answers HCI_Reset with success and keeps links, scanning and a pending
    connection (quirk 1), and LE Create Connection Cancel leaves the attempt pending (quirk 3).
    """

    def drop_state(self, reason: int = CONNECTION_TIMEOUT) -> None:
        """Drops links (the peers see `reason`, as after a supervision timeout), scanning, a
        pending connection and advertising. Sends no event to our own host."""
        for connection in list(self.le_connections.values()):
            try:
                connection.send_ll_control_pdu(ll.TerminateInd(reason))
            except Exception as error:  # the peer may be gone already
                log.debug("terminate to %s failed: %s", connection.peer_address, error)
            self.le_connections.pop(connection.peer_address, None)
        self.le_scan_enable = False
        self.filter_duplicates = False
        self.pending_le_connection = None
        self.le_legacy_advertiser.stop()
        for advertising_set in self.advertising_sets.values():
            advertising_set.stop()
        self.advertising_sets.clear()
        self.event_mask = 0
        self.le_event_mask = 0
        self.random_address = hci.Address("00:00:00:00:00:00")  # a host sets its own again
        self.le_scan_own_address_type = hci.Address.RANDOM_DEVICE_ADDRESS

    def on_hci_reset_command(self, command):  # noqa: D401 (Bumble handler name)
        self.drop_state()
        return super().on_hci_reset_command(command)

    def on_hci_le_create_connection_cancel_command(self, command):
        # Core v5.4 Vol 4 Part E 7.8.13: Command Disallowed without a pending attempt;
        # otherwise success, then LE Connection Complete with Unknown Connection Identifier.
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(COMMAND_DISALLOWED)
        self.pending_le_connection = None
        event = hci.HCI_LE_Connection_Complete_Event(
            status=UNKNOWN_CONNECTION_IDENTIFIER,
            connection_handle=0,
            role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address.address_type,
            peer_address=pending.peer_address,
            connection_interval=0,
            peripheral_latency=0,
            supervision_timeout=0,
            central_clock_accuracy=0,
        )
        # Scheduled now, so it runs before the Command Complete is handed to the host.
        asyncio.get_running_loop().call_soon(self.send_hci_packet, event)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)


class ClientSink:
    """Where the controller's H4 packets go: the current TCP client (or nowhere)."""

    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer

    def on_packet(self, packet: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(packet)


class HostPort:
    """A TCP server serving H4 for exactly one controller, one client at a time."""

    def __init__(self, index: int, controller: WorldController, port: int = 0):
        self.index = index
        self.controller = controller
        self.server: asyncio.AbstractServer | None = None
        self.port = port
        self.writer: asyncio.StreamWriter | None = None
        self.generation = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.on_client, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.generation += 1
        generation = self.generation
        if self.writer is not None:
            log.info("host%d: a new client replaces the previous one", self.index)
            self.writer.close()
        # A new host starts from a clean controller: no links, no scan, no pending connection.
        self.controller.set_packet_sink(None)
        self.controller.drop_state()
        self.writer = writer
        sink = ClientSink(writer)
        self.controller.set_packet_sink(sink)
        parser = PacketParser(self.controller)  # this client's own H4 parser state
        log.info("host%d: client connected", self.index)
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                if generation != self.generation:
                    break
                try:
                    parser.feed_data(data)
                except Exception as error:  # bad H4 type byte: drop the client
                    log.warning("host%d: bad H4 stream (%s); closing the client", self.index, error)
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if generation == self.generation:
                # The host went away: behave like a supervision timeout on its links.
                self.controller.set_packet_sink(None)
                self.controller.drop_state()
                self.writer = None
                log.info("host%d: client gone; links dropped", self.index)
            writer.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.server is not None:
            self.server.close()


class HostPty:
    """A pseudo-terminal serving H4 for exactly one controller: the host under test opens the
    slave path as a UART (`uart:/dev/pts/N?baud=...&flow=none`). The world keeps the slave open
    too, so a host that goes away is not noticed (a UART has no such signal, reference quirk 10);
    HCI_Reset clears the controller's state."""

    def __init__(self, index: int, controller: WorldController):
        self.index = index
        self.controller = controller
        self.master = -1
        self.slave = -1
        self.path = ""
        self.parser: PacketParser | None = None

    async def start(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        self.parser = PacketParser(self.controller)
        self.controller.set_packet_sink(self)
        asyncio.get_running_loop().add_reader(self.master, self.on_readable)

    def on_packet(self, packet: bytes) -> None:
        try:
            os.write(self.master, packet)
        except (BlockingIOError, OSError) as error:
            log.warning("uart%d: packet dropped (%s): the host does not read", self.index, error)

    def on_readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        try:
            self.parser.feed_data(data)
        except Exception as error:  # bad H4 type byte: start over with a fresh parser
            log.warning("uart%d: bad H4 stream (%s); parser reset", self.index, error)
            self.parser = PacketParser(self.controller)

    def close(self) -> None:
        try:
            asyncio.get_running_loop().remove_reader(self.master)
        except Exception:
            pass
        for fd in (self.master, self.slave):
            if fd >= 0:
                os.close(fd)


# ---------------------------------------------------------------------------------------------
# Peripherals
# ---------------------------------------------------------------------------------------------
class WorldDevice(Device):
    """A Bumble Device whose peripheral side answers an LTK request with the legacy LTK it
    distributed itself.

    Bumble 0.0.236 stores, on the responder, the LTK IT distributed as `ltk_central` and the
    central's as `ltk_peripheral` (both with EDIV 0 and Rand 0), then answers an LTK request in
    the peripheral role with `ltk_peripheral`: a central re-encrypting with the key the
    peripheral distributed (Core v5.4 Vol 3 Part H 2.4.4.2) gets a MIC failure (0x3D).
    LE Secure Connections keys (`ltk`) are unaffected.
    """

    async def get_long_term_key(self, connection_handle: int, rand: bytes, ediv: int) -> bytes | None:
        connection = self.lookup_connection(connection_handle)
        if connection is not None and connection.role == hci.Role.PERIPHERAL and self.keystore is not None:
            keys = await self.keystore.get(str(connection.peer_address))
            if keys is not None and keys.ltk is None and keys.ltk_central is not None:
                return keys.ltk_central.value
        return await super().get_long_term_key(connection_handle, rand, ediv)


class FixedDelegate(PairingDelegate):
    def __init__(self, io_capability: int, passkey: int | None):
        super().__init__(io_capability=io_capability)
        self.passkey = passkey

    async def generate_passkey(self) -> int:
        return self.passkey if self.passkey is not None else 123456

    async def compare_numbers(self, number: int, digits: int) -> bool:
        log.info("numeric comparison %0*d: confirmed", digits, number)
        return True

    async def confirm(self, auto: bool = False) -> bool:
        return True

    async def display_number(self, number: int, digits: int) -> None:
        log.info("passkey shown: %0*d", digits, number)


IO_CAPABILITIES = {
    "no-input-no-output": PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT,
    "display-only": PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY,
    "display-yes-no": PairingDelegate.IoCapability.DISPLAY_OUTPUT_AND_YES_NO_INPUT,
    "keyboard-only": PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY,
    "keyboard-display": PairingDelegate.IoCapability.DISPLAY_OUTPUT_AND_KEYBOARD_INPUT,
}


def ad_structure(ad_type: int, data: bytes) -> bytes:
    return bytes([len(data) + 1, ad_type]) + data


def encode_sfloat(mantissa: int, exponent: int) -> bytes:
    """IEEE-11073 16-bit SFLOAT: 4-bit exponent (high) and 12-bit mantissa, little-endian."""
    return (((exponent & 0x0F) << 12) | (mantissa & 0x0FFF)).to_bytes(2, "little")


def encode_float(mantissa: int, exponent: int) -> bytes:
    """IEEE-11073 32-bit FLOAT: int24 mantissa then int8 exponent, little-endian."""
    return (mantissa & 0xFFFFFF).to_bytes(3, "little") + (exponent & 0xFF).to_bytes(1, "little")


class Peripheral:
    def __init__(self, spec: dict[str, Any], link: LocalLink):
        self.spec = spec
        self.name: str = spec["name"]
        self.kind: str = spec["kind"]
        if self.kind not in KINDS:
            raise ValueError(f"peripheral {self.name}: unknown kind {self.kind!r} (one of {KINDS})")
        self.interval = float(spec.get("interval_ms", 100)) / 1000.0
        self.privacy = bool(spec.get("privacy", False))
        self.controller = Controller(f"{self.name}-controller", link=link)
        config = DeviceConfiguration()
        config.load_from_dict({"name": self.name, "address": spec["address"]})
        config.advertising_interval_min = 100
        config.advertising_interval_max = 100
        config.le_privacy_enabled = self.privacy
        config.le_rpa_timeout = 0  # rotation only on the rotate-address command
        if "irk" in spec:
            config.irk = bytes.fromhex(spec["irk"])
        self.device = WorldDevice.from_config_with_hci(config, self.controller, self.controller)
        self.advertise_wanted = True  # the control commands switch this
        self.away = False
        self.notifications_sent = 0
        self.connections: dict[int, Any] = {}  # handle -> bumble Connection
        self.subscribed: set[int] = set()  # handles of subscribed connections
        self.sent_per_connection: dict[int, int] = {}
        self.garbage_done: set[int] = set()
        self.tasks: set[asyncio.Task] = set()
        self.advertising_lock = asyncio.Lock()
        self.measurement_characteristic: Characteristic | None = None
        self.build_gatt()
        self.device.on("connection", self.on_connection)

    # GATT ------------------------------------------------------------------------------------
    def device_information(self) -> Service:
        return Service(
            uuid16(DEVICE_INFORMATION_SERVICE),
            [
                Characteristic(uuid16(MANUFACTURER_NAME), Characteristic.Properties.READ,
                               Characteristic.READABLE, self.spec.get("manufacturer", "IoMT Test Devices").encode()),
                Characteristic(uuid16(MODEL_NUMBER), Characteristic.Properties.READ,
                               Characteristic.READABLE, self.spec.get("model", self.kind).encode()),
                Characteristic(uuid16(SERIAL_NUMBER), Characteristic.Properties.READ,
                               Characteristic.READABLE, self.spec.get("serial", f"SN-{self.name}").encode()),
            ],
        )

    def build_sig_profile(self) -> list[Service]:
        """`sig-profile`: any health profile that delivers one measurement characteristic,
        replaying the spec's `payloads` (hex strings, e.g. the reference's golden bytes) in turn,
        by notification or indication (`indicate: true`)."""
        service = int(str(self.spec["service"]), 16)
        characteristic = int(str(self.spec["characteristic"]), 16)
        self.payloads = [bytes.fromhex(h) for h in self.spec["payloads"]]
        if not self.payloads:
            raise ValueError(f"peripheral {self.name}: payloads is empty")
        self.indicate = bool(self.spec.get("indicate", False))
        props = Characteristic.Properties.INDICATE if self.indicate else Characteristic.Properties.NOTIFY
        measurement = Characteristic(uuid16(characteristic), props, Characteristic.READABLE, b"")
        self.service_uuids = [service]
        self.sig_measurement = measurement
        in_service = [measurement]
        if "date_time_offset_s" in self.spec:
            # Date Time 0x2A08 (7 octets) in the profile's own service: a ticking clock this far
            # from the world's, writable with `date_time_writable`.
            self.clock_offset = float(self.spec["date_time_offset_s"])
            writable = bool(self.spec.get("date_time_writable", False))

            def read_date_time(_connection) -> bytes:
                t = time.gmtime(time.time() + self.clock_offset)
                return struct.pack("<HBBBBB", t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)

            def write_date_time(_connection, value: bytes) -> None:
                y, mo, d, h, mi, sec = struct.unpack_from("<HBBBBB", value)
                self.clock_offset = calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0)) - time.time()
                log.info("%s clock set by the host via Date Time (offset now %.1f s)", self.name, self.clock_offset)

            in_service.append(Characteristic(
                uuid16(0x2A08),
                Characteristic.Properties.READ | (Characteristic.Properties.WRITE if writable else 0),
                Characteristic.READABLE | (Characteristic.WRITEABLE if writable else 0),
                CharacteristicValue(read=read_date_time, write=write_date_time)))
        services = [Service(uuid16(service), in_service), self.device_information()]
        if "current_time_offset_s" in self.spec:
            # Current Time Service 0x1805 / Current Time 0x2A2B: a clock that ticks, running
            # `current_time_offset_s` from the world's (UTC) clock; writable with
            # `current_time_writable` (a host may then set it, and it ticks on from the new time).
            self.clock_offset = float(self.spec["current_time_offset_s"])
            writable = bool(self.spec.get("current_time_writable", False))
            props = Characteristic.Properties.READ | (Characteristic.Properties.WRITE if writable else 0)
            perms = Characteristic.READABLE | (Characteristic.WRITEABLE if writable else 0)

            def read_clock(_connection) -> bytes:
                t = time.gmtime(time.time() + self.clock_offset)
                return struct.pack("<HBBBBBBBB", t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                                   t.tm_wday + 1, 0, 0)

            def write_clock(_connection, value: bytes) -> None:
                y, mo, d, h, mi, sec = struct.unpack_from("<HBBBBB", value)
                written = calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0))
                self.clock_offset = written - time.time()
                log.info("%s clock set by the host (offset now %.1f s)", self.name, self.clock_offset)

            self.current_time = Characteristic(uuid16(0x2A2B), props, perms,
                                               CharacteristicValue(read=read_clock, write=write_clock))
            services.append(Service(uuid16(0x1805), [self.current_time]))
        return services

    def build_gatt(self) -> None:
        if self.kind == "broadcaster":
            self.build_broadcaster()
            return
        if self.kind == "sig-profile":
            services = self.build_sig_profile()
            self.measurement_characteristic = self.sig_measurement
            self.sig_measurement.on("subscription", self.on_subscription)
            self.device.add_services(services)
            return
        if self.kind == "thermometer-secure":
            measurement = Characteristic(uuid16(TEMPERATURE_MEASUREMENT), Characteristic.Properties.INDICATE,
                                         Characteristic.READABLE, b"")
            # Our own CCCD whose write needs an encrypted link (ATT error 0x0F without it); the
            # server uses it instead of adding its own open one.
            measurement.descriptors = [Descriptor(
                GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
                Descriptor.READABLE | Descriptor.WRITEABLE | Descriptor.WRITE_REQUIRES_ENCRYPTION,
                self.device.gatt_server.make_descriptor_value(measurement),
            )]
            services = [Service(uuid16(HEALTH_THERMOMETER_SERVICE), [measurement]), self.device_information()]
            self.service_uuids = [HEALTH_THERMOMETER_SERVICE]
            self.configure_pairing()
        elif self.kind == "glucose-meter":
            measurement = self.build_glucose()
            services = [self.glucose_service, self.device_information()]
            self.service_uuids = [GLUCOSE_SERVICE, DEVICE_INFORMATION_SERVICE]
            if self.spec.get("secure", False):
                self.configure_pairing()
        else:
            measurement = Characteristic(uuid16(HEART_RATE_MEASUREMENT), Characteristic.Properties.NOTIFY,
                                         Characteristic.READABLE, b"")
            location = Characteristic(uuid16(BODY_SENSOR_LOCATION), Characteristic.Properties.READ,
                                      Characteristic.READABLE, bytes([int(self.spec.get("body_sensor_location", 1))]))
            battery = Characteristic(uuid16(BATTERY_LEVEL), Characteristic.Properties.READ | Characteristic.Properties.NOTIFY,
                                     Characteristic.READABLE, bytes([int(self.spec.get("battery", 87))]))
            services = [Service(uuid16(HEART_RATE_SERVICE), [measurement, location]), self.device_information(),
                        Service(uuid16(BATTERY_SERVICE), [battery])]
            self.service_uuids = [HEART_RATE_SERVICE, DEVICE_INFORMATION_SERVICE, BATTERY_SERVICE]
        self.measurement_characteristic = measurement
        measurement.on("subscription", self.on_subscription)
        self.device.add_services(services)

    def configure_pairing(self) -> None:
        io = self.spec.get("io_capability", "no-input-no-output")
        if io not in IO_CAPABILITIES:
            raise ValueError(f"peripheral {self.name}: unknown io_capability {io!r}")
        passkey = self.spec.get("passkey")
        legacy = bool(self.spec.get("legacy", False))
        mitm = io != "no-input-no-output"
        self.device.pairing_config_factory = lambda _connection: PairingConfig(
            sc=not legacy, mitm=mitm, bonding=True,
            delegate=FixedDelegate(IO_CAPABILITIES[io], passkey),
        )

    # Glucose meter ---------------------------------------------------------------------------
    def cccd(self, characteristic: Characteristic) -> Descriptor:
        """A CCCD of our own: with `secure`, writing it needs an encrypted link (ATT 0x0F)."""
        permissions = Descriptor.READABLE | Descriptor.WRITEABLE
        if self.spec.get("secure", False):
            permissions |= Descriptor.WRITE_REQUIRES_ENCRYPTION
        return Descriptor(GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR, permissions,
                          self.device.gatt_server.make_descriptor_value(characteristic))

    def build_glucose(self) -> Characteristic:
        """Glucose Service 0x1808 (reference 6): Measurement 0x2A18 (notify), Context 0x2A34
        (notify), Feature 0x2A51 (read), RACP 0x2A52 (write + indicate)."""
        errors = self.spec.get("att_errors", "current")
        if errors not in ATT_ERRORS:
            raise ValueError(f"peripheral {self.name}: unknown att_errors {errors!r} (one of {list(ATT_ERRORS)})")
        self.att_errors = ATT_ERRORS[errors]
        self.mmol = self.spec.get("units", "mg/dL") == "mmol/L"
        self.first_sequence = int(self.spec.get("first_sequence", 1))
        self.records: list[dict[str, Any]] = []
        for _ in range(int(self.spec.get("records", 5))):
            self.append_record()
        self.busy_left = int(self.spec.get("busy_first", 0))
        self.racp_requests: list[str] = []
        self.racp_task: asyncio.Task | None = None
        self.racp_answered = False  # the running procedure's final indication is on its way
        self.racp_handle: int | None = None  # the connection the running procedure serves
        self.racp_abort = False
        measurement = Characteristic(uuid16(GLUCOSE_MEASUREMENT), Characteristic.Properties.NOTIFY,
                                     Characteristic.READABLE, b"")
        context = Characteristic(uuid16(GLUCOSE_MEASUREMENT_CONTEXT), Characteristic.Properties.NOTIFY,
                                 Characteristic.READABLE, b"")
        feature = Characteristic(uuid16(GLUCOSE_FEATURE), Characteristic.Properties.READ, Characteristic.READABLE,
                                 struct.pack("<H", int(self.spec.get("feature", 0x013F))))
        racp = Characteristic(uuid16(RECORD_ACCESS_CONTROL_POINT),
                              Characteristic.Properties.WRITE | Characteristic.Properties.INDICATE,
                              Characteristic.WRITEABLE, CharacteristicValue(write=self.on_racp_write))
        for c in (measurement, context, racp):
            c.descriptors = [self.cccd(c)]
        self.context_characteristic = context
        self.racp_characteristic = racp
        self.glucose_service = Service(uuid16(GLUCOSE_SERVICE), [measurement, context, feature, racp])
        return measurement

    def append_record(self) -> dict[str, Any]:
        """Record i: sequence first_sequence + i, base time 2026-01-01 08:00 + i hours, a time
        offset of -5 min on every 3rd, 90 + 7i mg/dL (or 5.0 + 0.4i mmol/L), capillary whole
        blood from a finger; every even i with a context (meal, tester self, health none)."""
        i = len(self.records)
        record = {"sequence": (self.first_sequence + i) & 0xFFFF, "index": i, "context": i % 2 == 0}
        self.records.append(record)
        return record

    def glucose_measurement(self, record: dict[str, Any]) -> bytes:
        i = record["index"]
        flags = 0x02  # concentration, type and sample location present
        day, hour = divmod(8 + i, 24)
        body = struct.pack("<HHBBBBB", record["sequence"], 2026, 1, 1 + day, hour, 0, 0)
        if i % 3 == 1:
            flags |= 0x01
            body += struct.pack("<h", -5)
        if self.mmol:
            flags |= 0x04  # mol/L: 5.0 mmol/L = 50e-4 mol/L
            body += encode_sfloat(50 + 4 * i, -4)
        else:  # kg/L: 90 mg/dL = 90e-5 kg/L
            body += encode_sfloat(90 + 7 * i, -5)
        body += bytes([0x11])  # type 1 capillary whole blood (low nibble), location 1 finger
        if record["context"]:
            flags |= 0x10
        return bytes([flags]) + body

    def glucose_context(self, record: dict[str, Any]) -> bytes:
        i = record["index"]
        # Meal present, tester-health present: meal 1..5, tester 1 self (low), health 5 none (high).
        return bytes([0x06]) + struct.pack("<H", record["sequence"]) + bytes([1 + i % 5, 0x51])

    def selected(self, operator: int, operand: bytes) -> list[dict[str, Any]] | int:
        """The records an RACP operator and operand select, or an RACP response value."""
        if operator == RACP_ALL:
            return list(self.records) if not operand else RACP_INVALID_OPERAND
        if operator in (RACP_FIRST, RACP_LAST):
            if operand:
                return RACP_INVALID_OPERAND
            return self.records[:1] if operator == RACP_FIRST else self.records[-1:]
        if operator in (RACP_LE, RACP_GE, RACP_RANGE):
            if not operand:
                return RACP_INVALID_OPERAND
            if operand[0] != 0x01:  # only filter type 0x01 (sequence number) is served here
                return RACP_OPERAND_NOT_SUPPORTED
            values = operand[1:]
            if len(values) != (4 if operator == RACP_RANGE else 2):
                return RACP_INVALID_OPERAND
            if operator == RACP_LE:
                (high,) = struct.unpack("<H", values)
                return [r for r in self.records if r["sequence"] <= high]
            if operator == RACP_GE:
                (low,) = struct.unpack("<H", values)
                return [r for r in self.records if r["sequence"] >= low]
            low, high = struct.unpack("<HH", values)
            if low > high:
                return RACP_INVALID_OPERAND
            return [r for r in self.records if low <= r["sequence"] <= high]
        if operator == RACP_NULL or operator > RACP_LAST:
            return RACP_INVALID_OPERATOR
        return RACP_OPERATOR_NOT_SUPPORTED

    def on_racp_write(self, connection, value: bytes) -> None:
        self.racp_requests.append(value.hex())
        log.info("%s RACP request %s", self.name, value.hex())
        cccd = self.device.gatt_server.subscribers.get(connection, {}).get(self.racp_characteristic.handle)
        if not cccd or cccd[0] & 0x02 == 0:
            raise att.ATT_Error(self.att_errors["cccd"], self.racp_characteristic.handle)
        if len(value) < 2:
            raise att.ATT_Error(att.ATT_INVALID_ATTRIBUTE_LENGTH_ERROR, self.racp_characteristic.handle)
        op, operator, operand = value[0], value[1], bytes(value[2:])
        # A procedure is over once its response indication is sent (the confirmation may still be
        # on its way back when the collector writes its next request).
        running = self.racp_task is not None and not self.racp_task.done() and not self.racp_answered
        if op == RACP_ABORT:
            if operator != RACP_NULL or operand:
                self.respond(connection, op, RACP_INVALID_OPERATOR if operator != RACP_NULL else RACP_INVALID_OPERAND)
                return
            self.racp_abort = True
            self.spawn(self.finish_abort(connection))
            return
        if running:
            raise att.ATT_Error(self.att_errors["busy"], self.racp_characteristic.handle)
        if self.busy_left > 0:
            self.busy_left -= 1
            raise att.ATT_Error(self.att_errors["busy"], self.racp_characteristic.handle)
        if op not in (RACP_REPORT, RACP_REPORT_NUMBER):
            self.respond(connection, op, RACP_OPCODE_NOT_SUPPORTED)
            return
        selected = self.selected(operator, operand)
        if isinstance(selected, int):
            self.respond(connection, op, selected)
            return
        if op == RACP_REPORT_NUMBER:
            self.racp_handle = connection.handle
            self.begin()
            self.racp_task = self.indicate_later(connection, bytes([RACP_NUMBER_RESPONSE, RACP_NULL])
                                                 + struct.pack("<H", len(selected)))
            return
        if not selected:
            self.respond(connection, op, RACP_NO_RECORDS)
            return
        self.racp_abort = False
        self.racp_handle = connection.handle
        self.begin()
        self.racp_task = asyncio.create_task(self.report(connection, selected))
        self.tasks.add(self.racp_task)
        self.racp_task.add_done_callback(self.tasks.discard)

    def begin(self) -> None:
        self.racp_answered = False

    def respond(self, connection, request: int, code: int) -> None:
        self.racp_handle = connection.handle
        self.begin()
        self.racp_task = self.indicate_later(connection, bytes([RACP_RESPONSE, RACP_NULL, request, code]))

    def indicate_later(self, connection, value: bytes) -> asyncio.Task:
        """After the Write Response has gone (the write handler returns first)."""
        async def send() -> None:
            await asyncio.sleep(0.005)
            await self.indicate_racp(connection, value)
        task = asyncio.create_task(send())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def indicate_racp(self, connection, value: bytes) -> None:
        self.racp_answered = True
        try:
            await asyncio.wait_for(self.device.indicate_subscriber(connection, self.racp_characteristic, value), 5)
            log.info("%s RACP indication %s", self.name, value.hex())
        except Exception as error:
            log.info("%s: RACP indication to 0x%04X failed: %r", self.name, connection.handle, error)

    async def send_record(self, connection, record: dict[str, Any]) -> None:
        await self.device.notify_subscriber(connection, self.measurement_characteristic, self.glucose_measurement(record))
        if record["context"]:
            await self.device.notify_subscriber(connection, self.context_characteristic, self.glucose_context(record))
        self.notifications_sent += 1

    async def report(self, connection, records: list[dict[str, Any]]) -> None:
        await asyncio.sleep(0.005)
        try:
            for record in records:
                if self.racp_abort:
                    return  # the abort answers for the procedure
                await self.send_record(connection, record)
                await asyncio.sleep(float(self.spec.get("record_interval_ms", 5)) / 1000.0)
        except Exception as error:
            log.info("%s: record to 0x%04X failed: %r", self.name, connection.handle, error)
            return
        await self.indicate_racp(connection, bytes([RACP_RESPONSE, RACP_NULL, RACP_REPORT, RACP_SUCCESS]))

    async def finish_abort(self, connection) -> None:
        task = self.racp_task
        if task is not None and not task.done():
            await asyncio.wait({task})  # returns when it ends, however it ends
        await asyncio.sleep(0.005)
        await self.indicate_racp(connection, bytes([RACP_RESPONSE, RACP_NULL, RACP_ABORT, RACP_SUCCESS]))

    async def add_record(self) -> int:
        """A new measurement taken on the meter: stored, and notified at once to a subscribed
        collector (with its context)."""
        record = self.append_record()
        for connection in list(self.connections.values()):
            try:
                await self.send_record(connection, record)
            except Exception as error:
                log.info("%s: live record to 0x%04X failed: %r", self.name, connection.handle, error)
        return record["sequence"]

    def advertising_data(self) -> bytes:
        if self.kind == "broadcaster":
            return self.broadcast_data()
        data = ad_structure(0x01, bytes([0x06]))  # LE General Discoverable, BR/EDR not supported
        data += ad_structure(0x03, b"".join(struct.pack("<H", u) for u in self.service_uuids))
        data += ad_structure(0x09, self.name.encode())
        if self.kind == "garbage" and "bad-adv" in self.spec.get("malformed", []):
            data += bytes([0x1E, 0xFF, 0x01])  # manufacturer data claiming 29 octets, carrying 1
        return data

    # Broadcaster -----------------------------------------------------------------------------
    def build_broadcaster(self) -> None:
        """`broadcaster`: a sensor that never connects (a scale, a thermometer). It advertises
        non-connectable, non-scannable (ADV_NONCONN_IND) with service data (`service_data: "181D"`)
        or manufacturer data (`manufacturer_data: "0157"`) carrying `payloads[i]` (hex), switching
        to the next payload on `{"cmd": "next-payload"}` or every `switch_ms` (the last one stays)."""
        if ("service_data" in self.spec) == ("manufacturer_data" in self.spec):
            raise ValueError(f"peripheral {self.name}: a broadcaster needs exactly one of service_data, manufacturer_data")
        self.payloads = [bytes.fromhex(h) for h in self.spec["payloads"]]
        if not self.payloads:
            raise ValueError(f"peripheral {self.name}: payloads is empty")
        self.payload_index = 0
        self.switch_ms = int(self.spec.get("switch_ms", 0))
        self.service_uuids = []

    def broadcast_data(self) -> bytes:
        data = ad_structure(0x01, bytes([0x04]))  # BR/EDR not supported, not discoverable
        payload = self.payloads[self.payload_index]
        if "service_data" in self.spec:
            data += ad_structure(0x16, struct.pack("<H", int(str(self.spec["service_data"]), 16)) + payload)
        else:
            data += ad_structure(0xFF, struct.pack("<H", int(str(self.spec["manufacturer_data"]), 16)) + payload)
        if len(data) > 31:
            raise ValueError(f"peripheral {self.name}: advertising data of {len(data)} octets exceeds 31")
        return data

    async def start_broadcasting(self) -> None:
        async with self.advertising_lock:
            self.advertise_wanted = True
            if self.device.is_advertising:
                await self.device.stop_advertising()
            await self.device.start_advertising(advertising_type=AdvertisingType.UNDIRECTED,
                                                advertising_data=self.broadcast_data())
            log.info("%s broadcasting payload %d as %s", self.name, self.payload_index, self.device.random_address)
        if self.switch_ms > 0 and self.payload_index + 1 < len(self.payloads):
            self.spawn(self.switch_later(self.payload_index))

    async def switch_later(self, index: int) -> None:
        await asyncio.sleep(self.switch_ms / 1000.0)
        if self.payload_index == index:  # not already switched by a command
            await self.next_payload()

    async def next_payload(self) -> int:
        if self.kind != "broadcaster":
            raise ValueError(f"{self.name} is not a broadcaster")
        if self.payload_index + 1 >= len(self.payloads):
            raise ValueError(f"{self.name} is already at its last payload")
        self.payload_index += 1
        if self.advertise_wanted:  # stopped by stop-advertising: the next start uses the new payload
            await self.start_broadcasting()
        return self.payload_index

    # Lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.device.power_on()
        if self.kind == "broadcaster":
            await self.start_broadcasting()
            return
        await self.start_advertising()
        self.spawn(self.send_loop())

    def spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start_advertising(self) -> None:
        if self.kind == "broadcaster":  # its own non-connectable advertising
            await self.start_broadcasting()
            return
        # One advertising change at a time: a re-advertise after a disconnection and a
        # rotate-address command racing each other broke Bumble's advertising set (error '0').
        async with self.advertising_lock:
            self.advertise_wanted = True
            if self.away or self.device.is_advertising:
                return
            if self.connections:  # one link at a time; advertise again after it ends
                return
            await self.device.start_advertising(advertising_data=self.advertising_data(), scan_response_data=b"")
            log.info("%s advertising as %s", self.name, self.device.random_address)

    async def stop_advertising(self) -> None:
        async with self.advertising_lock:
            self.advertise_wanted = False
            await self.device.stop_advertising()

    async def rotate_address(self) -> str:
        if not self.privacy:
            raise ValueError(f"{self.name} has no privacy (spec option privacy: true)")
        async with self.advertising_lock:
            was_advertising = self.device.is_advertising
            await self.device.stop_advertising()
            address = hci.Address.generate_private_address(self.device.irk)
            await self.device.send_sync_command(hci.HCI_LE_Set_Random_Address_Command(random_address=address))
            self.device.random_address = address
            if was_advertising or (self.advertise_wanted and not self.away and not self.connections):
                await self.device.start_advertising(advertising_data=self.advertising_data(), scan_response_data=b"")
            log.info("%s rotated to %s", self.name, address)
            return str(address)

    def on_connection(self, connection) -> None:
        handle = connection.handle
        log.info("%s connected to %s (handle 0x%04X)", self.name, connection.peer_address, handle)
        self.connections[handle] = connection
        self.sent_per_connection[handle] = 0
        connection.on("disconnection", lambda reason: self.on_disconnection(handle, reason))
        connection.on("pairing", lambda keys: log.info("%s paired with %s", self.name, connection.peer_address))
        connection.on("pairing_failure", lambda reason: log.info("%s pairing failed: %s", self.name, reason))

    def on_disconnection(self, handle: int, reason: int) -> None:
        log.info("%s disconnected (handle 0x%04X, reason 0x%02X)", self.name, handle, reason)
        self.connections.pop(handle, None)
        self.subscribed.discard(handle)
        self.sent_per_connection.pop(handle, None)
        self.garbage_done.discard(handle)
        if self.kind == "glucose-meter" and self.racp_handle == handle and self.racp_task is not None:
            # A procedure ends with its link (the next collector must not find the meter busy).
            self.racp_task.cancel()
            self.racp_task = None
            self.racp_handle = None
        if self.advertise_wanted and not self.away:
            self.spawn(self.start_advertising())

    def on_subscription(self, bearer, notify_enabled: bool, indicate_enabled: bool) -> None:
        connection = getattr(bearer, "connection", bearer)
        handle = connection.handle
        if notify_enabled or indicate_enabled:
            self.subscribed.add(handle)
        else:
            self.subscribed.discard(handle)
        log.info("%s subscription from 0x%04X: notify=%s indicate=%s", self.name, handle, notify_enabled, indicate_enabled)

    # Data ------------------------------------------------------------------------------------
    def measurement(self, n: int) -> bytes:
        if self.kind == "sig-profile":
            return self.payloads[n % len(self.payloads)]
        if self.kind == "thermometer-secure":
            # Flags: Celsius; every other one carries a temperature type (2 = body).
            tenths = 365 + n % 10
            if n % 2:
                return bytes([0x04]) + encode_float(tenths, -1) + bytes([0x02])
            return bytes([0x00]) + encode_float(tenths, -1)
        bpm = 60 + n % 40
        flags = 0x00
        body = b""
        if n % 3 == 0:
            flags |= 0x06  # sensor contact supported and detected
        if n % 2 == 0:
            flags |= 0x10  # RR intervals (1/1024 s)
            rr = int(60 * 1024 / bpm)
            body += struct.pack("<HH", rr, rr + 3)
        return bytes([flags, bpm]) + body

    async def send_loop(self) -> None:
        if self.kind == "glucose-meter":
            return  # records go out on RACP requests and add-record
        n = 0
        while True:
            await asyncio.sleep(self.interval)
            for handle in list(self.subscribed):
                connection = self.connections.get(handle)
                if connection is None:
                    continue
                try:
                    if self.kind == "garbage" and handle not in self.garbage_done:
                        self.garbage_done.add(handle)
                        self.send_garbage(connection)
                    value = self.measurement(n)
                    if self.kind == "thermometer-secure" or (self.kind == "sig-profile" and self.indicate):
                        await asyncio.wait_for(
                            self.device.indicate_subscriber(connection, self.measurement_characteristic, value), 5)
                    else:
                        await self.device.notify_subscriber(connection, self.measurement_characteristic, value)
                    self.notifications_sent += 1
                    self.sent_per_connection[handle] = self.sent_per_connection.get(handle, 0) + 1
                except Exception as error:
                    log.info("%s: send to 0x%04X failed: %r", self.name, handle, error)
                    continue
                if self.kind == "dropper" and self.sent_per_connection.get(handle, 0) >= int(self.spec.get("drop_after", 5)):
                    await self.drop(connection)
            n += 1

    async def drop(self, connection) -> None:
        """Like a wearable going out of range: link lost, silent for away_ms, then back."""
        self.away = True
        log.info("%s dropping the link and going away", self.name)
        try:
            await connection.disconnect(CONNECTION_TIMEOUT)
        except Exception as error:
            log.info("%s: disconnect failed: %r", self.name, error)
        await asyncio.sleep(float(self.spec.get("away_ms", 1000)) / 1000.0)
        self.away = False
        if self.advertise_wanted:
            await self.start_advertising()

    def send_garbage(self, connection) -> None:
        malformed = self.spec.get("malformed", GARBAGE_ALL)
        handle = connection.handle
        send = self.device.send_l2cap_pdu
        value_handle = self.measurement_characteristic.handle
        if "truncated-notification" in malformed:
            send(handle, 0x0004, bytes([0x1B, value_handle & 0xFF]))  # handle cut in half, no value
        if "unknown-opcode" in malformed:
            send(handle, 0x0004, bytes([0x3F, 0x00, 0x00]))  # 0x3F is not an ATT opcode
        if "unknown-handle" in malformed:
            send(handle, 0x0004, bytes([0x1B, 0xF0, 0xFF, 0x48, 0x00]))  # notification on 0xFFF0
        if "unknown-cid" in malformed:
            send(handle, 0x0050, b"not an L2CAP channel anyone opened")
        if "bad-smp" in malformed:
            send(handle, 0x0006, bytes([0xFF]) + bytes(range(100)))  # unknown code, longer than any SMP MTU
        log.info("%s sent malformed PDUs %s to 0x%04X", self.name, malformed, handle)

    async def status(self) -> dict[str, Any]:
        bonded = []
        if self.device.keystore is not None:
            for name, _keys in await self.device.keystore.get_all():
                bonded.append(name)
        return {
            "kind": self.kind,
            "address": str(self.device.random_address).replace("/P", ""),
            "advertising": bool(self.device.is_advertising),
            "connected": bool(self.connections),
            "peers": [str(c.peer_address) for c in self.connections.values()],
            "subscribed": bool(self.subscribed),
            "encrypted": any(c.is_encrypted for c in self.connections.values()),
            "notifications_sent": self.notifications_sent,
            "bonded": bonded,
            **({"records": len(self.records), "racp_requests": list(self.racp_requests)}
               if self.kind == "glucose-meter" else {}),
        }

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()


# ---------------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------------
class World:
    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.link = LocalLink()
        self.host_ports: list[HostPort] = []
        self.uart_hosts: list[HostPty] = []
        self.peripherals: dict[str, Peripheral] = {}
        self.done = asyncio.Event()

    async def start(self) -> None:
        for index in range(int(self.spec.get("hosts", 1))):
            controller = WorldController(f"host{index}", link=self.link)
            fixed = self.spec.get("ports", [])
            port = HostPort(index, controller, int(fixed[index]) if index < len(fixed) else 0)
            await port.start()
            self.host_ports.append(port)
        for index in range(int(self.spec.get("uart_hosts", 0))):
            controller = WorldController(f"uart{index}", link=self.link)
            pty_host = HostPty(index, controller)
            await pty_host.start()
            self.uart_hosts.append(pty_host)
        for peripheral_spec in self.spec.get("peripherals", []):
            name = peripheral_spec["name"]
            if name in self.peripherals:
                raise ValueError(f"duplicate peripheral name {name}")
            peripheral = Peripheral(peripheral_spec, self.link)
            self.peripherals[name] = peripheral
            await peripheral.start()

    def ready_document(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "hosts": [{"port": p.port} for p in self.host_ports],
            "uart_hosts": [{"path": p.path} for p in self.uart_hosts],
            "peripherals": {
                name: {
                    "address": str(p.device.random_address).replace("/P", ""),
                    "identity_address": str(p.device.static_address).replace("/P", ""),
                    "address_type": "random",
                    "irk": p.device.irk.hex() if p.privacy else None,
                }
                for name, p in self.peripherals.items()
            },
        }

    def peripheral(self, command: dict[str, Any]) -> Peripheral:
        name = command.get("peripheral")
        if name not in self.peripherals:
            raise ValueError(f"unknown peripheral {name!r}")
        return self.peripherals[name]

    async def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        cmd = command.get("cmd")
        if cmd == "status":
            return {"ok": True, "hosts": [{"port": p.port, "client": p.writer is not None} for p in self.host_ports],
                    "peripherals": {n: await p.status() for n, p in self.peripherals.items()}}
        if cmd == "quit":
            self.done.set()
            return {"ok": True}
        if cmd == "disconnect":
            peripheral = self.peripheral(command)
            reason = int(command.get("reason", REMOTE_USER_TERMINATED))
            count = 0
            for connection in list(peripheral.connections.values()):
                await connection.disconnect(reason)
                count += 1
            return {"ok": True, "disconnected": count}
        if cmd == "stop-advertising":
            await self.peripheral(command).stop_advertising()
            return {"ok": True}
        if cmd == "start-advertising":
            await self.peripheral(command).start_advertising()
            return {"ok": True}
        if cmd == "add-record":
            peripheral = self.peripheral(command)
            if peripheral.kind != "glucose-meter":
                raise ValueError(f"{peripheral.name} is not a glucose-meter")
            return {"ok": True, "sequence": await peripheral.add_record()}
        if cmd == "next-payload":
            return {"ok": True, "payload_index": await self.peripheral(command).next_payload()}
        if cmd == "rotate-address":
            return {"ok": True, "address": (await self.peripheral(command).rotate_address()).replace("/P", "")}
        raise ValueError(f"unknown command {cmd!r}")

    async def answer(self, line: str) -> None:
        try:
            command = json.loads(line)
            if not isinstance(command, dict):
                raise ValueError("a command is a JSON object")
            reply = await self.handle(command)
        except Exception as error:
            reply = {"ok": False, "error": str(error)}
        print(json.dumps(reply), flush=True)

    async def read_stdin(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                log.info("stdin closed; quitting")
                self.done.set()
                return
            if line.strip():
                await self.answer(line.decode())

    async def close(self) -> None:
        for p in self.host_ports:
            p.close()
        for p in self.uart_hosts:
            p.close()
        for p in self.peripherals.values():
            await p.close()


def write_ready(path: str, document: dict[str, Any]) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(document, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--spec", help="JSON spec file")
    group.add_argument("--spec-json", help="JSON spec inline")
    parser.add_argument("--ready-file", help="written atomically once everything listens and advertises")
    parser.add_argument("--verbose", action="store_true", help="debug logs (every HCI packet)")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.verbose:
        logging.getLogger("bumble").setLevel(logging.WARNING)
    if args.spec:
        with open(args.spec) as f:
            spec = json.load(f)
    else:
        spec = json.loads(args.spec_json)

    world = World(spec)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, world.done.set)
    try:
        await world.start()
    except Exception as error:
        log.error("cannot start the world: %s", error)
        await world.close()
        return 2
    document = world.ready_document()
    if args.ready_file:
        write_ready(args.ready_file, document)
    log.info("ready: %s", json.dumps(document))
    print("READY", flush=True)
    stdin_task = asyncio.create_task(world.read_stdin())
    await world.done.wait()
    stdin_task.cancel()
    await world.close()
    log.info("bye")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
