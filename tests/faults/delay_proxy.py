#!/usr/bin/python3
"""tests/faults/delay_proxy.py — owns the added latency of the "latency and loss" fault scenario.

A TCP forwarder that adds a fixed one-way delay to every chunk it carries, in each direction, in
order and without limiting bandwidth: what `tc qdisc ... netem delay` does (without jitter). It
exists because this kernel has no sch_netem ("Specified qdisc kind is unknown"); packet loss is
not emulated here but by nftables in the kernel (`numgen random mod 100 < 5 drop`, real TCP
retransmissions), see tests/faults/run.sh.

    delay_proxy.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT

Starts with no delay. SIGUSR1 sets the delay to $DELAY_MS (default 100) per direction, SIGUSR2
back to 0; each chunk keeps the delay that was in force when it was read. Prints "ready" once
listening. SIGTERM/SIGINT stop it.
"""
import asyncio
import os
import signal
import sys
import time

DELAY = [0.0]
ON_DELAY = int(os.environ.get("DELAY_MS", "100")) / 1000.0


async def pipe(reader, writer):
    """Copies reader to writer; each chunk leaves DELAY after it arrived (order kept)."""
    queue = asyncio.Queue()

    async def read_side():
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + DELAY[0], data))
                if not data:
                    return
        except (ConnectionError, OSError):
            queue.put_nowait((0.0, None))  # reset: abort the other side at once

    async def write_side():
        try:
            while True:
                due, data = await queue.get()
                if data is None:
                    writer.transport.abort()
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    r = asyncio.ensure_future(read_side())
    await write_side()
    r.cancel()


async def handle(client_reader, client_writer, target):
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.transport.abort()
        return
    up = asyncio.ensure_future(pipe(client_reader, server_writer))
    down = asyncio.ensure_future(pipe(server_reader, client_writer))
    await asyncio.gather(up, down, return_exceptions=True)
    for w in (client_writer, server_writer):
        w.close()


async def main():
    lhost, lport, thost, tport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: DELAY.__setitem__(0, ON_DELAY))
    loop.add_signal_handler(signal.SIGUSR2, lambda: DELAY.__setitem__(0, 0.0))
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
    server = await asyncio.start_server(lambda r, w: handle(r, w, (thost, tport)), lhost, lport)
    print("ready", flush=True)
    async with server:
        await stop


if __name__ == "__main__":
    asyncio.run(main())
