#!/usr/bin/python3
"""A TCP relay on 127.0.0.1 that delays every chunk by a fixed time in each
direction, for the benchmark (the kernel here has no netem).

    python3 bench/delayproxy.py --delay-ms 10 LISTEN_PORT:TARGET_PORT ...

Each LISTEN_PORT on 127.0.0.1 forwards to TARGET_PORT on 127.0.0.1.  Once
every listener is up it prints "ready" on stdout; it runs until SIGTERM or
SIGINT.

How the delay works: for each direction of a connection, one task reads
chunks as they arrive and stamps each with "now + delay"; another task
writes them out in order, each no earlier than its stamp.  Chunks are not
delayed one after another (that would cut throughput to one chunk per
delay): a stream of chunks leaves the relay at the rate it came in, just
`delay` later, like a long link with plenty of bandwidth.  A bounded queue
per direction gives back-pressure when the far side reads slowly.  A
half-close (EOF) is forwarded after the same delay.

Only loopback: the relay binds 127.0.0.1 and connects to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import time

LOOPBACK = "127.0.0.1"
CHUNK = 256 * 1024
QUEUE_CHUNKS = 256          # at most 64 MiB in flight per direction
_EOF = object()


async def _pump_in(reader, queue, delay):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            await queue.put((time.monotonic() + delay, data))
    except (ConnectionError, OSError):
        pass
    finally:
        await queue.put((time.monotonic() + delay, _EOF))


async def _pump_out(writer, queue):
    try:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is _EOF:
                if writer.can_write_eof():
                    writer.write_eof()
                await writer.drain()
                return
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        return


async def _direction(reader, writer, delay):
    queue: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)
    pin = asyncio.create_task(_pump_in(reader, queue, delay))
    try:
        await _pump_out(writer, queue)
    finally:
        if not pin.done():
            pin.cancel()
            try:
                await pin
            except BaseException:
                pass


def _nodelay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


async def _handle(cr, cw, target, delay):
    try:
        sr, sw = await asyncio.open_connection(LOOPBACK, target)
    except OSError:
        cw.close()
        return
    _nodelay(cw)
    _nodelay(sw)
    try:
        await asyncio.gather(_direction(cr, sw, delay), _direction(sr, cw, delay))
    finally:
        for w in (cw, sw):
            try:
                w.close()
            except Exception:
                pass


async def main_async(pairs, delay):
    servers = []
    for listen, target in pairs:
        srv = await asyncio.start_server(
            lambda r, w, t=target: _handle(r, w, t, delay),
            LOOPBACK, listen, reuse_address=True)
        servers.append(srv)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for srv in servers:
        srv.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay-ms", type=float, default=10.0,
                    help="delay added in each direction (default 10)")
    ap.add_argument("pairs", nargs="+", metavar="LISTEN:TARGET")
    args = ap.parse_args(argv)
    pairs = []
    for p in args.pairs:
        a, _, b = p.partition(":")
        pairs.append((int(a), int(b)))
    asyncio.run(main_async(pairs, args.delay_ms / 1000.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
