"""Serves ONE Bumble virtual controller as H4 over TCP on 127.0.0.1 (port 0 = any free port).

Prints "PORT <n>" on stdout once listening, then serves one client at a time until killed
(the test owns the process and sends SIGTERM). Test fixture for IoMTHCITransportTests; the multi-device world lives
in scripts/ble/.
"""
import asyncio

from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport.common import PacketParser


class WriterSink:
    def __init__(self):
        self.writer = None

    def on_packet(self, packet: bytes) -> None:
        if self.writer is not None:
            self.writer.write(packet)


async def main() -> None:
    link = LocalLink()
    sink = WriterSink()
    controller = Controller("iomt-test", link=link, public_address="F0:F1:F2:F3:F4:F5")
    controller.host = sink
    parser = PacketParser(controller)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sink.writer = writer
        while True:
            data = await reader.read(4096)
            if not data:
                break
            parser.feed_data(data)
        sink.writer = None
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
