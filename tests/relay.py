"""A TCP relay on 127.0.0.1 for the tests: what every relay of the tests
shares (faultproxy.FaultProxy, throttlelib.ThrottleRelay, RateLimitRelay
below): a listening socket (loopserver), the connection to the target with
TCP_NODELAY, the sockets of every relayed connection closed on stop, and
the plain two-way pipe.

A relay with other behaviour subclasses Relay and overrides
accepted(client, num) (what to do with a new connection: by default
connect to the target at once and pipe both ways) or forward() (what one
direction does with the bytes it read).

    with RateLimitRelay(dc.pop3s_port, 300_000) as relay:
        url = f"pop3s://localhost:{relay.port}"

Standard library only.
"""

from __future__ import annotations

import socket
import threading
import time

from loopserver import LOOPBACK, LoopbackServer


class Relay(LoopbackServer):
    """Relays each connection accepted to target_host:target_port, both ways,
    unchanged (TLS passes through untouched, so a URL localhost:PORT still
    matches the test certificate)."""

    thread_name = "relay"
    chunk = 65536

    def __init__(self, target_port, target_host=LOOPBACK, name="relay"):
        self.target = (target_host, target_port)
        self.name = name
        self.lock = threading.RLock()
        self.accepted_count = 0
        self._socks: set = set()
        self._listen_init()

    # ------------------------------------------------------------ sockets
    def connect(self):
        """A new connection to the target (TCP_NODELAY, blocking); OSError
        if it cannot be made."""
        s = socket.create_connection(self.target, timeout=10)
        s.settimeout(None)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.track(s)
        return s

    def track(self, *socks):
        """Sockets to be closed when the relay stops."""
        with self.lock:
            self._socks.update(socks)

    def _end_sessions(self):
        with self.lock:
            socks = list(self._socks)
            self._socks.clear()
        for s in socks:
            close(s)

    # ------------------------------------------------------------ connections
    def _accepted(self, c):
        with self.lock:
            self.accepted_count += 1
            num = self.accepted_count
        self.track(c)
        self.accepted(c, num)

    def accepted(self, client, num):
        """A new connection (number `num`, from 1), in the accepting thread:
        connect to the target and pipe both ways, a thread each."""
        try:
            server = self.connect()
        except OSError:
            close(client)
            return
        self._spawn(self.pipe, (client, server, "c2s"), f"{self.name}-{num}-c2s")
        self._spawn(self.pipe, (server, client, "s2c"), f"{self.name}-{num}-s2c")

    def pipe(self, src, dst, direction):
        """Copy src to dst through forward() until either side ends; then
        shut both down."""
        state = {"t0": time.monotonic(), "sent": 0}
        try:
            while True:
                data = src.recv(self.chunk)
                if not data:
                    break
                self.forward(dst, data, direction, state)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def forward(self, dst, data, direction, state):
        """Send what one direction read; `state` is that pipe's own dict."""
        dst.sendall(data)


class RateLimitRelay(Relay):
    """A relay that passes the server's bytes to the client at no more than
    `rate` bytes a second (the client's bytes go through at once): a slow
    link."""

    thread_name = "ratelimit"
    chunk = 4096

    def __init__(self, target_port, rate, target_host=LOOPBACK, name="ratelimit"):
        super().__init__(target_port, target_host, name)
        self.rate = rate

    def forward(self, dst, data, direction, state):
        dst.sendall(data)
        if direction == "s2c" and self.rate:
            state["sent"] += len(data)
            ahead = state["sent"] / self.rate - (time.monotonic() - state["t0"])
            if ahead > 0:
                time.sleep(ahead)


def close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
