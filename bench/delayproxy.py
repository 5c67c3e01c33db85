#!/usr/bin/python3
"""A TCP relay on 127.0.0.1 that delays every chunk by a fixed time in each
direction, for the benchmark (the kernel here has no netem).

    python3 bench/delayproxy.py --delay-ms 10 [--stats FILE] \\
        [--tls-cert CERT --tls-key KEY] LISTEN:TARGET[:DELAY_MS[:rewrite]] ...

Each LISTEN port on 127.0.0.1 forwards to TARGET on 127.0.0.1, adding
DELAY_MS (default --delay-ms) in each direction.  Once every listener is up
it prints "ready" on stdout; it runs until SIGTERM or SIGINT.

How the delay works: for each direction of a connection, one task reads
chunks as they arrive and stamps each with "now + delay"; another task
writes them out in order, each no earlier than its stamp.  Chunks are not
delayed one after another (that would cut throughput to one chunk per
delay): a stream of chunks leaves the relay at the rate it came in, just
`delay` later, like a long link with plenty of bandwidth.  A bounded queue
per direction gives back-pressure when the far side reads slowly.  A
half-close (EOF) is forwarded after the same delay.

`rewrite` (an IMAP server that offers neither LITERAL+ nor MULTIAPPEND,
like Gmail): the relay ends the client's TLS itself (--tls-cert/--tls-key:
the server's own certificate, so the client's checks pass unchanged),
talks plain IMAP to TARGET (Dovecot's imap port), and in what the server
sends rewrites every capability list: " LITERAL+" becomes " LITERAL-"
(RFC 7888: only literals up to 4096 bytes may be non-synchronising) and
" MULTIAPPEND" and " STARTTLS" (the client is on TLS already) go.  The
server itself still accepts whatever it accepted; the client sees only
what it would see from such a server.  Literals in the server's replies are
passed through untouched.  The TLS work moves from Dovecot's imap-login to
the relay, so the machine does as much of it as without the rewrite.

--stats FILE: when a connection opens, one line of JSON is appended ({"id",
"listen", "opened"}); when it closes, another with the same id and what
went through it, per direction ("up": client to server, "down":
server to client): bytes, the first and last arrival (time.monotonic()),
and every time the link sat empty for more than 2 ms, as [start, length]
(seconds, start counted from the first arrival; at most 50,000 of them).
The link is empty when the relay holds nothing for that side (every chunk
has been written out, and the kernel's send queue to the receiver is
empty: TIOCOUTQ) until the sender's next chunk arrives.  A sender held
back by a slow receiver leaves the link full (the relay's queue is not
empty); a sender with nothing to send, or one waiting for a reply, leaves
it empty.  (Data the receiver's kernel holds but the receiver has not read
yet counts as delivered.)

Only loopback: the relay binds 127.0.0.1 and connects to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import re
import signal
import socket
import ssl
import struct
import sys
import termios
import time

LOOPBACK = "127.0.0.1"
CHUNK = 256 * 1024
QUEUE_CHUNKS = 256          # at most 64 MiB in flight per direction
GAP = 0.002                 # shorter pauses between chunks are not recorded
MAX_GAPS = 50000
_EOF = object()


class Flow:
    """What arrived from one sender, for --stats."""

    def __init__(self):
        self.bytes = 0
        self.first = self.last = None
        self.gaps = []
        self.inflight = 0           # chunks queued or being written
        self.empty_since = None     # when the link last became empty

    def arrived(self, n, now, queued):
        if self.first is None:
            self.first = now
        elif self.inflight == 0 and self.empty_since is not None:
            gap = now - self.empty_since
            if gap > GAP and len(self.gaps) < MAX_GAPS:
                self.gaps.append((round(self.empty_since - self.first, 4), round(gap, 4)))
        if queued:
            self.inflight += 1
            self.empty_since = None
        self.last = now
        self.bytes += n

    def written(self):
        self.inflight -= 1

    def empty(self, now):
        if self.inflight == 0:
            self.empty_since = now

    def dict(self):
        return {"bytes": self.bytes, "first": self.first, "last": self.last,
                "gaps": self.gaps}


class CapRewrite:
    """Rewrites the capability lists in an IMAP server's output, passing
    literals ({N}) through untouched.  feed(bytes) -> bytes."""

    LIT = re.compile(rb"\{(\d+)\}\r?\n\Z")

    def __init__(self):
        self.buf = bytearray()
        self.lit = 0

    @staticmethod
    def caps(line):
        line = re.sub(rb" LITERAL\+(?=[ \]\r\n])", b" LITERAL-", line, flags=re.I)
        return re.sub(rb" (?:MULTIAPPEND|STARTTLS)(?=[ \]\r\n])", b"", line, flags=re.I)

    def feed(self, data):
        self.buf += data
        out = []
        while self.buf:
            if self.lit:
                take = min(self.lit, len(self.buf))
                out.append(bytes(self.buf[:take]))
                del self.buf[:take]
                self.lit -= take
                continue
            i = self.buf.find(b"\n")
            if i < 0:
                break
            line = bytes(self.buf[:i + 1])
            del self.buf[:i + 1]
            up = line[:200].upper()
            if up.startswith(b"* CAPABILITY ") or b"[CAPABILITY " in up:
                line = self.caps(line)
            m = self.LIT.search(line)
            if m:
                self.lit = int(m.group(1))
            out.append(line)
        return b"".join(out)


async def _pump_in(reader, queue, delay, flow, rewrite=None):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            now = time.monotonic()
            n = len(data)
            if rewrite:
                data = rewrite.feed(data)
            flow.arrived(n, now, bool(data))
            if data:
                await queue.put((now + delay, data))
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        await queue.put((time.monotonic() + delay, _EOF))


def _outq(sock):
    """Bytes in the kernel's send queue of sock (not yet acknowledged)."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    except (OSError, ValueError):
        return 0


async def _pump_out(writer, queue, flow):
    sock = writer.get_extra_info("socket")
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
            flow.written()
            # Empty once the transport's buffer and the kernel's send queue
            # are too (or something new has come meanwhile).
            # (A receiver that has gone away leaves it as it is: 1 s at most.)
            give_up = time.monotonic() + 1.0
            while (flow.inflight == 0 and sock is not None and not writer.is_closing()
                   and time.monotonic() < give_up
                   and (writer.transport.get_write_buffer_size() or _outq(sock))):
                await asyncio.sleep(0.0005)
            flow.empty(time.monotonic())
    except (ConnectionError, OSError, ssl.SSLError):
        return


async def _direction(reader, writer, delay, flow, rewrite=None):
    queue: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)
    pin = asyncio.create_task(_pump_in(reader, queue, delay, flow, rewrite))
    try:
        await _pump_out(writer, queue, flow)
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


_conn_ids = iter(range(1, 1 << 62))


def _record(stats, rec):
    with open(stats, "a") as f:
        f.write(json.dumps(rec) + "\n")


async def _handle(cr, cw, listen, target, delay, rewrite, stats):
    opened = time.monotonic()
    cid = next(_conn_ids)
    if stats:
        _record(stats, {"id": cid, "listen": listen, "opened": opened})
    try:
        sr, sw = await asyncio.open_connection(LOOPBACK, target)
    except OSError:
        cw.close()
        return
    _nodelay(cw)
    _nodelay(sw)
    up, down = Flow(), Flow()
    try:
        await asyncio.gather(_direction(cr, sw, delay, up),
                             _direction(sr, cw, delay, down,
                                        CapRewrite() if rewrite else None))
    finally:
        for w in (cw, sw):
            try:
                w.close()
            except Exception:
                pass
        if stats:
            _record(stats, {"id": cid, "listen": listen, "opened": opened,
                            "closed": time.monotonic(), "up": up.dict(), "down": down.dict()})


async def main_async(pairs, stats, cert, key):
    servers = []
    tls = None
    if any(p[3] for p in pairs):
        if not (cert and key):
            raise SystemExit("delayproxy: a rewrite pair needs --tls-cert and --tls-key")
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
    for listen, target, delay, rewrite in pairs:
        srv = await asyncio.start_server(
            lambda r, w, ln=listen, t=target, d=delay, rw=rewrite:
                _handle(r, w, ln, t, d, rw, stats),
            LOOPBACK, listen, reuse_address=True, ssl=tls if rewrite else None)
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
                    help="delay added in each direction where a pair names none (default 10)")
    ap.add_argument("--stats", help="append one JSON line per closed connection")
    ap.add_argument("--tls-cert", help="certificate for the rewrite pairs' TLS")
    ap.add_argument("--tls-key", help="its key")
    ap.add_argument("pairs", nargs="+", metavar="LISTEN:TARGET[:DELAY_MS[:rewrite]]")
    args = ap.parse_args(argv)
    pairs = []
    for p in args.pairs:
        f = p.split(":")
        delay = float(f[2]) if len(f) > 2 and f[2] else args.delay_ms
        rewrite = len(f) > 3 and f[3] == "rewrite"
        if len(f) > 3 and not rewrite:
            ap.error(f"{p}: the fourth field can only be 'rewrite'")
        pairs.append((int(f[0]), int(f[1]), delay / 1000.0, rewrite))
    asyncio.run(main_async(pairs, args.stats, args.tls_cert, args.tls_key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
