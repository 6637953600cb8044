"""Captures real HCI events from a Bumble 0.0.236 controller for IoMTHCITests fixtures.

A central controller (driven by raw HCI bytes from here) and a Bumble Device advertising on a
second controller share a LocalLink. Prints the H4 bytes (hex) of the first LE Extended Advertising
Report and of the LE Connection Complete the central receives. Run:
  /work/main/.venv/bin/python Tests/IoMTHCITransportTests/Fixtures/capture_bumble_events.py
"""
import asyncio

from bumble.controller import Controller
from bumble.core import AdvertisingData
from bumble.device import Device
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink


class Collector:
    def __init__(self):
        self.packets = []
        self.event = asyncio.Event()

    def on_packet(self, packet: bytes) -> None:
        self.packets.append(bytes(packet))
        self.event.set()

    async def wait_for(self, pred):
        while True:
            for p in self.packets:
                if pred(p):
                    return p
            self.event.clear()
            await self.event.wait()


async def main() -> None:
    link = LocalLink()
    central = Controller("central", link=link, public_address="F0:F1:F2:F3:F4:F5")
    col = Collector()
    central.host = col
    periph_ctrl = Controller("periph", link=link, public_address="C0:11:22:33:44:55")
    dev = Device(address=Address("C0:11:22:33:44:55"), host=Host(periph_ctrl, AsyncPipeSink(periph_ctrl)))
    dev.name = "IoMT-Thermo"
    dev.advertising_data = bytes(AdvertisingData([
        (AdvertisingData.FLAGS, bytes([0x06])),
        (AdvertisingData.COMPLETE_LOCAL_NAME, b"IoMT-Thermo"),
        (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, bytes([0x09, 0x18])),
    ]))
    await dev.power_on()
    await dev.start_advertising()

    def cmd(hexstr):
        central.on_packet(bytes.fromhex(hexstr))

    cmd("01030c00")  # HCI_Reset
    cmd("01052006c6c5c4c3c2c1")  # LE Set Random Address C1:C2:C3:C4:C5:C6
    cmd("010b200701100010000100")  # LE Set Scan Parameters: active, 0x10, 0x10, random, 0
    cmd("010c20020100")  # LE Set Scan Enable
    adv = await asyncio.wait_for(col.wait_for(lambda p: p[0] == 4 and p[1] == 0x3E and p[3] in (0x02, 0x0D)), 5)
    print("ADV", adv.hex())
    cmd("010c20020000")  # scan off
    # LE Create Connection to the peripheral (advertises as random C0:11:22:33:44:55), own address random.
    cmd("010d2019" + "6000" + "6000" + "00" + "01" + "554433" "2211c0" + "01"
        + "1800" + "2800" + "0000" + "f401" + "0000" + "0000")
    conn = await asyncio.wait_for(col.wait_for(lambda p: p[0] == 4 and p[1] == 0x3E and p[3] in (0x01, 0x0A)), 5)
    print("CONN", conn.hex())
    for p in col.packets:
        if p[0] == 4 and p[1] in (0x0E, 0x0F):
            print("CMD", p.hex())


asyncio.run(main())
