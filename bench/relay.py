"""A TCP relay that adds a fixed one-way delay in each direction, for links `tc netem` cannot shape here.

Each chunk read is stamped and queued; a writer task sends it once `delay` has passed since it
arrived, so the relay behaves as a delay line: many chunks are in flight at once and throughput is
kept, while every request and every response start later by `delay`. A byte budget per direction
bounds memory (and acts as the receive window). Run as `python -m bench.relay LISTEN TARGET DELAY`;
`bench.network` starts it inside the client namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

CHUNK = 256 << 10
BUDGET = 16 << 20  # bytes in flight per direction: well above 1 Gbit x 10 ms


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    room = asyncio.Semaphore(BUDGET // CHUNK)

    async def send() -> None:
        while True:
            stamp, data = await queue.get()
            wait = stamp + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            room.release()
        with contextlib.suppress(OSError):
            writer.write_eof()

    sender = asyncio.create_task(send())
    try:
        while True:
            await room.acquire()
            data = await reader.read(CHUNK)
            await queue.put((time.monotonic(), data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()


async def _serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, server_writer, delay), _pipe(server_reader, client_writer, delay),
                             return_exceptions=True)
        for w in (client_writer, server_writer):
            w.close()

    server = await asyncio.start_server(handle, *listen, limit=CHUNK)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    listen, target, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(_address(listen), _address(target), delay))


if __name__ == "__main__":
    main()
