"""A throttling relay for the batch throttling tests
(tests/integ/test_throttle.py).

Standard library only, built on tests/harness.py (which it does not change).

The relay listens on 127.0.0.1 with implicit TLS (imaps:// or pop3s://,
with the private Dovecot's own certificate, so the test CA verifies it)
and, connection by connection, either plays a throttling provider or
relays to the Dovecot's plain port, where the real mail is:

    relay = ThrottleRelay(dc, "imap", [
        Refuse("greeting", b"* BYE [UNAVAILABLE] Too many connections, "
                           b"try again in 2 seconds"),
    ]).start()
    ...popbridge batch with imap_url = relay.url...
    relay.conns          # [Conn]: when each came, what it got, whose it was
    relay.heal()         # relay everything from now on
    relay.stop()

The plan is a list of steps taken one per connection in order (or, for a
Refuse at a command, one per connection that sends that command), then
`then` for every later one: None relays, a Refuse refuses again (a
provider that never lets go).  Refusals:

  Refuse("greeting", line)  the greeting is `line` (IMAP "* BYE ...", POP3
                            "-ERR ..."); then the connection is closed
  Refuse("login", line)     the greeting and capabilities are Dovecot's;
                            the login command (IMAP AUTHENTICATE or LOGIN,
                            POP3 AUTH or PASS) is answered with `line`
                            ("{tag}" is the command's tag) instead of
                            reaching Dovecot; what the client sends next
                            (LOGOUT, QUIT) is relayed and Dovecot answers
  Refuse("select", line)    the same for IMAP SELECT, EXAMINE or STATUS (the
                            first look at the mailbox)
  Refuse("append", line)    the same for IMAP APPEND (nothing of it reaches
                            Dovecot); always closes (a literal would follow)
  close=True                close the connection after the line (a BYE),
                            once the client has sent all it had in flight

no_sasl=True (POP3) drops the SASL line from Dovecot's CAPA reply, so
that popbridge logs in with USER and PASS, as with an old server.

Each connection is recorded as a Conn: `t` (time.monotonic() at accept),
`refused_at` (when the refusal was sent, or None), `what` ("relayed" or
the Refuse's step), `user` (the login name seen on the way, for relayed
connections and login refusals; never a password).

Command matching reads the client's lines up to the first match (at most
64 KiB); a message line that looked like "TAG APPEND ..." could fool it,
which the tests' messages never do.
"""

from __future__ import annotations

import base64
import re
import select
import ssl
import time

from loopserver import LOOPBACK
from relay import Relay
WATCH_MAX = 65536

_COMMANDS = {
    ("imap", "login"): re.compile(rb"^(\S+) (AUTHENTICATE|LOGIN)\b", re.I),
    ("imap", "select"): re.compile(rb"^(\S+) (SELECT|EXAMINE|STATUS)\b", re.I),
    ("imap", "append"): re.compile(rb"^(\S+) (APPEND)\b", re.I),
    ("pop3", "login"): re.compile(rb"^()(AUTH|PASS)\b", re.I),
}


class Refuse:
    def __init__(self, step, line: bytes, close=False):
        if step not in ("greeting", "login", "select", "append"):
            raise ValueError(f"throttlelib: step {step!r}")
        self.step = step
        self.line = line
        self.close = close or step in ("greeting", "append")

    def __repr__(self):
        return f"<Refuse {self.step} {self.line[:40]!r}>"


class Conn:
    def __init__(self, num, t):
        self.num = num
        self.t = t
        self.refused_at = None
        self.what = "relayed"
        self.user = None
        self.closed_at = None

    def __repr__(self):
        return (f"<conn {self.num} t={self.t:.3f} {self.what} user={self.user} "
                f"refused_at={self.refused_at}>")


def _user_of(proto, line: bytes):
    """The login name in a login command line, or None (no password kept)."""
    try:
        if proto == "imap":
            parts = line.split()
            if len(parts) >= 3 and parts[1].upper() == b"LOGIN":
                return parts[2].strip(b'"').decode("latin-1")
            if len(parts) >= 4 and parts[1].upper() == b"AUTHENTICATE" and \
                    parts[2].upper() == b"PLAIN":
                fields = base64.b64decode(parts[3]).split(b"\0")
                return fields[1].decode("latin-1") if len(fields) == 3 else None
            return None
        parts = line.split()
        if len(parts) >= 2 and parts[0].upper() == b"USER":
            return parts[1].decode("latin-1")
        if len(parts) >= 3 and parts[0].upper() == b"AUTH" and parts[1].upper() == b"PLAIN":
            fields = base64.b64decode(parts[2]).split(b"\0")
            return fields[1].decode("latin-1") if len(fields) == 3 else None
    except (ValueError, IndexError):
        return None
    return None


def _b64_user(line: bytes):
    """A SASL PLAIN response line sent on its own (POP3 AUTH PLAIN)."""
    try:
        fields = base64.b64decode(line.strip(), validate=True).split(b"\0")
    except ValueError:
        return None
    return fields[1].decode("latin-1") if len(fields) == 3 else None


class ThrottleRelay(Relay):
    """A Relay that ends TLS itself and watches the client's lines until
    the login, to refuse where the plan says (see the module docstring)."""

    thread_name = "throttle"

    def __init__(self, dc, proto, plan=(), then=None, name=None, no_sasl=False):
        if proto not in ("imap", "pop3"):
            raise ValueError(f"throttlelib: proto {proto!r}")
        super().__init__(dc.imap_port if proto == "imap" else dc.pop3_port, LOOPBACK,
                         name or proto)
        self.dc = dc
        self.proto = proto
        self.plan = list(plan)
        self.then = then
        self.no_sasl = no_sasl
        self.conns: list[Conn] = []
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(dc.cert_file, dc.key_file)

    # ------------------------------------------------------------ config
    def url(self, host=LOOPBACK):
        """imaps://HOST:PORT or pop3s://HOST:PORT; the certificate is for
        localhost and 127.0.0.1, so either host name verifies."""
        return f"{self.proto}s://{host}:{self.port}"

    def heal(self):
        """Relay every connection from now on."""
        with self.lock:
            self.plan = []
            self.then = None

    def refused(self):
        with self.lock:
            return [c for c in self.conns if c.refused_at is not None]

    def relayed(self):
        with self.lock:
            return [c for c in self.conns if c.what == "relayed"]

    def _take(self, step):
        """The Refuse for this connection at `step`, or None; a step of the
        plan is used up when it fires."""
        with self.lock:
            if self.plan:
                if self.plan[0] is not None and self.plan[0].step != step:
                    return None
                r = self.plan[0]
                if step == "greeting" or r is not None:
                    self.plan.pop(0)
                return r
            if self.then is not None and self.then.step == step:
                return self.then
            return None

    def _next_wants(self):
        """The step the next refusal waits for, if any (None: relay)."""
        with self.lock:
            if self.plan:
                return self.plan[0].step if self.plan[0] is not None else None
            return self.then.step if self.then is not None else None

    # ------------------------------------------------------------ lifecycle
    def accepted(self, c, num):
        with self.lock:
            conn = Conn(len(self.conns) + 1, time.monotonic())
            self.conns.append(conn)
        self._spawn(self._serve, (c, conn), f"{self.name}-{conn.num}")

    # ------------------------------------------------------------ one connection
    def _serve(self, raw, conn):
        cli = srv = None
        try:
            raw.settimeout(30)
            try:
                cli = self._ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                conn.what = "no TLS handshake"
                return
            r = self._take("greeting")
            if r is not None:
                conn.what = "greeting"
                conn.refused_at = time.monotonic()
                cli.sendall(r.line + b"\r\n")
                _linger(cli)
                return
            srv = self.connect()
            srv.settimeout(30)
            self._pump(cli, srv, conn)
        except OSError:
            pass
        finally:
            conn.closed_at = time.monotonic()
            for s in (srv, cli, raw):
                if s is None:
                    continue
                try:
                    s.close()
                except OSError:
                    pass

    def _pump(self, cli, srv, conn):
        """Relay both ways; the client's lines are watched until a refusal
        fires, or the login was seen and no refusal is due."""
        buf = b""
        watching = True
        seen = 0
        b64_next = False
        while True:
            if cli.pending() == 0:
                rd, _, _ = select.select([cli, srv], [], [], 30)
                if not rd:
                    return
            else:
                rd = [cli]
            if srv in rd:
                data = srv.recv(65536)
                if not data:
                    return
                if self.no_sasl:
                    data = re.sub(rb"(?m)^SASL[^\r\n]*\r\n", b"", data)
                cli.sendall(data)
            if cli not in rd:
                continue
            try:
                data = cli.recv(65536)
            except ssl.SSLWantReadError:
                continue
            if not data:
                return
            if not watching:
                srv.sendall(data)
                continue
            buf += data
            seen += len(data)
            while watching and b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                line += b"\n"
                text = line.rstrip(b"\r\n")
                if b64_next:
                    b64_next = False
                    conn.user = conn.user or _b64_user(text)
                elif conn.user is None:
                    conn.user = _user_of(self.proto, text)
                    b64_next = self.proto == "pop3" and \
                        re.fullmatch(rb"AUTH PLAIN", text, re.I) is not None
                step = m = None
                for (proto, st), rx in _COMMANDS.items():
                    if proto == self.proto and (m := rx.match(text)):
                        step = st
                        break
                r = self._take(step) if step is not None else None
                if r is not None:
                    conn.what = step
                    conn.refused_at = time.monotonic()
                    cli.sendall(r.line.replace(b"{tag}", m.group(1)) + b"\r\n")
                    if r.close:
                        _linger(cli)
                        return
                    # The command never reaches Dovecot; what follows
                    # (LOGOUT, QUIT) does, and Dovecot answers it.
                    b64_next = False
                    watching = False
                    continue
                srv.sendall(line)
                if self._next_wants() is None and conn.user is not None \
                        and not b64_next:
                    watching = False
            if seen > WATCH_MAX:
                watching = False
            if not watching and buf:
                srv.sendall(buf)
                buf = b""


def _linger(cli, idle=0.5, most=5.0):
    """After a BYE: read and drop what the client still sends (the rest of
    an APPEND in flight) until it closes or falls silent, then close.  A
    close with unread data would send a TCP RST, and the client could lose
    the BYE it has not read yet; a careful server lingers like this."""
    end = time.monotonic() + most
    cli.settimeout(idle)
    try:
        while time.monotonic() < end:
            if not cli.recv(65536):
                return
    except (OSError, ssl.SSLError):
        return


__all__ = ["ThrottleRelay", "Refuse", "Conn"]
