"""Embedding a capture in an asyncio server: live counters over HTTP on loopback.

    sudo python3 docs/examples/async_server.py [--interface eth0] [--port 8080]
    curl http://127.0.0.1:8080/counters

One task captures; an asyncio HTTP server answers from the same loop.  The
capture yields to the loop every millisecond of work, so requests are served
promptly even at full capture load.  --self-test runs a client that fetches
the counters a few times, checks them and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from _traffic import capture_target

import zcap


class Counters:
    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.started = time.monotonic()

    def as_dict(self, cap: zcap.Capture) -> dict:
        stats = cap.stats()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {"packets": self.packets, "bytes": self.bytes,
                "packets_per_second": round(self.packets / elapsed),
                "kernel_received": stats.received, "kernel_dropped": stats.dropped,
                "ring_ready_blocks": stats.ready, "ring_blocks": stats.ring_blocks}


async def capture(cap: zcap.Capture, counters: Counters) -> None:
    async for pkt in cap:
        counters.packets += 1
        counters.bytes += pkt.wirelen


async def serve(cap: zcap.Capture, counters: Counters, port: int) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass                                           # skip the headers
        if request.split()[1:2] == [b"/counters"]:
            body, status = json.dumps(counters.as_dict(cap)).encode(), b"200 OK"
        else:
            body, status = b'{"error": "try /counters"}', b"404 Not Found"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def fetch(port: int) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /counters HTTP/1.1\r\nHost: localhost\r\n\r\n")
    response = await reader.read()
    writer.close()
    return json.loads(response.split(b"\r\n\r\n", 1)[1])


async def main(interface: str | None, port: int, self_test: bool) -> None:
    with capture_target(interface) as target:
        async with zcap.open_live(target.pop("interface"), **target) as cap:
            counters = Counters()
            server = await serve(cap, counters, port)
            port = server.sockets[0].getsockname()[1]
            capturing = asyncio.create_task(capture(cap, counters))
            print(f"serving capture counters on http://127.0.0.1:{port}/counters")
            try:
                if self_test:
                    seen = []
                    for _ in range(5):
                        await asyncio.sleep(0.3)
                        t0 = time.monotonic()
                        seen.append(await fetch(port))
                        print(f"  {seen[-1]}  ({(time.monotonic() - t0) * 1000:.1f} ms)")
                    assert seen[-1]["packets"] > seen[0]["packets"] > 0, seen
                    print("self-test OK")
                else:
                    await server.serve_forever()
            finally:
                capturing.cancel()
                server.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interface", "-i")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--self-test", action="store_true")
    args = p.parse_args()
    asyncio.run(main(args.interface, args.port, args.self_test))
