"""A scripted TCP fault proxy for popbridge's fault tests.

Python 3 standard library only; one thread per direction per connection;
listens on 127.0.0.1 on a free port and forwards to a target (the private
Dovecot's plain IMAP or POP3 port).  Plaintext only: popbridge reaches it
with tls = "none", so the proxy sees the protocol and can break it where a
real network or server would.

    px = FaultProxy(dc.imap_port, name="imap").start()
    px.rules = [Rule("c2s", match=rb"APPEND", nth=2, offset=3000, action="cut")]
    ...popbridge runs against px.port...
    px.fired()          # [(session, rule name, position)] of rules that fired
    px.stop()

Rules act on one direction of the byte stream of a connection: "c2s" (what
popbridge sends) or "s2c" (what the server answers).  A rule fires

  * at the `nth` match of the regular expression `match` (bytes, searched
    with re.M in the stream as it passes; a match may span chunks up to
    `window` bytes), at its start (at="start") or end (at="end", default),
    plus `offset` bytes; or
  * without `match`: when the stream of that direction reaches `offset`
    bytes from the start of the connection.

and then does its `action` at that point of the stream (everything before
the point is forwarded first):

  "cut"       close both sides at once (the bytes after the point are lost;
              rst=True sends a TCP RST instead of a FIN to the client)
  "hold"      forward nothing more in direction `hold` ("s2c" by default:
              the server's replies; "c2s": the client's commands; "both"),
              keep the connection open; it is closed after `hold_seconds`
              or when the client goes away
  "inject"    send `data` to the client (then carry on, or cut if
              then_cut=True); with at="start" and drop=True the matched
              bytes themselves are not forwarded
  "replace"   forward `data` instead of the matched bytes (the match must
              lie within one `window`); with nth=0 every match is replaced
  "call"      call fn(session) (synchronously: the stream waits), then go
              on; fn may return "cut" or "hold" to do that afterwards
  "delay"     (c2s only) a command that reaches the server late: from the
              point on, the client's bytes are kept back, not forwarded;
              the server connection stays open when the client goes away
              (kill -9), and the kept bytes go to the server only when
              the test calls px.release() (or `hold_seconds` after the
              rule fired).  release() then waits for the server's tagged
              reply to every complete command among them (so a late
              APPEND is stored, or refused, before it returns) and closes
              the server side.  Put the point at the start of a command
              (match=rb"^\\S+ APPEND", at="start") so that the kept bytes
              are whole commands.  What the server says while the client
              is alive still reaches the client; after the client has
              gone it is read and dropped, and after release() it is kept
              (px.release() returns it).  px.delayed_commands() gives the
              complete IMAP commands kept back so far (ImapCommand, with
              their literals), so a test can wait until a whole batch is
              in before it kills the client.

A rule fires once per proxy by default (once=True); once=False makes it
fire in every connection (each connection counts its own matches).
`session=K` restricts it to the K-th connection (from 1).

For IMAP, `commands=fn` gives a command-level hook on what the client
sends: each complete command (its line and every literal it carries, sync
or LITERAL+, {n} or ~{n}) is passed as an ImapCommand to fn(cmd, session)
before the byte rules see it.  fn returns None (forward it unchanged),
bytes (forward these instead; b"" drops it), or calls session.to_client()
/ session.cut() itself.  A command whose line ends in a synchronising
literal {n} is forwarded up to there at once (the client waits for "+").

Everything that passed is recorded per session (`c2s`, `s2c` byte counts,
the first `keep_bytes` bytes of each direction in `transcript`) for
assertion messages.  Nothing is written to any file.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time

from loopserver import LOOPBACK
from relay import Relay, close

ACTIONS = ("cut", "hold", "inject", "replace", "call", "delay")


class Rule:
    def __init__(self, direction, match=None, *, nth=1, at="end", offset=0,
                 action="cut", data=b"", fn=None, hold="s2c", hold_seconds=120.0,
                 then_cut=False, drop=False, rst=False, once=True, session=None,
                 window=4096, name=None):
        if direction not in ("c2s", "s2c"):
            raise ValueError(f"faultproxy: direction {direction!r}")
        if action not in ACTIONS:
            raise ValueError(f"faultproxy: action {action!r}")
        if action == "replace" and match is None:
            raise ValueError("faultproxy: replace needs a match")
        if action == "delay" and direction != "c2s":
            raise ValueError("faultproxy: delay acts on what the client sends (c2s)")
        self.direction = direction
        self.match = re.compile(match, re.M) if isinstance(match, bytes) else match
        self.nth = nth
        self.at = at
        self.offset = offset
        self.action = action
        self.data = data
        self.fn = fn
        self.hold = hold
        self.hold_seconds = hold_seconds
        self.then_cut = then_cut
        self.drop = drop
        self.rst = rst
        self.once = once
        self.session = session
        self.window = window
        self.name = name or f"{direction}:{action}" + (
            f"@{match!r}" if match is not None else f"@{offset}")
        self.fired = 0

    def __repr__(self):
        return f"<Rule {self.name}>"


class ImapCommand:
    """One complete IMAP command as the client sent it."""

    def __init__(self, data: bytes, literals: list):
        self.data = data
        self.literals = literals          # the literal payloads, in order
        first = data.split(b"\r\n", 1)[0]
        parts = first.split(b" ", 2)
        self.tag = parts[0].decode("latin-1")
        self.verb = parts[1].decode("latin-1").upper() if len(parts) > 1 else ""
        self.line = first

    def __repr__(self):
        return f"<ImapCommand {self.tag} {self.verb} {len(self.data)} bytes>"


_LIT_RE = re.compile(rb"~?\{(\d+)(\+?)\}\r\n$")


class _CommandSplitter:
    """Cuts the client's byte stream into complete IMAP commands."""

    def __init__(self):
        self.buf = bytearray()
        self.cur = bytearray()          # the command being assembled
        self.lits: list = []
        self.need = 0                   # literal bytes still to come
        self.sync_flush = 0             # bytes of cur already forwarded

    def feed(self, data: bytes):
        """Yields ("cmd", ImapCommand) and ("raw", bytes) items: raw items
        must go to the server now (a line ending in a sync literal)."""
        self.buf += data
        out = []
        while True:
            if self.need > 0:
                take = min(self.need, len(self.buf))
                if take == 0:
                    break
                chunk = bytes(self.buf[:take])
                del self.buf[:take]
                self.cur += chunk
                self.lits[-1] += chunk
                self.need -= take
                if self.need > 0:
                    break
                continue
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                break
            line = bytes(self.buf[:nl + 2])
            del self.buf[:nl + 2]
            self.cur += line
            m = _LIT_RE.search(line)
            if m:
                self.need = int(m.group(1))
                self.lits.append(bytearray())
                if not m.group(2):
                    # Synchronising literal: the client waits for "+".
                    out.append(("raw", bytes(self.cur[self.sync_flush:])))
                    self.sync_flush = len(self.cur)
                if self.need == 0:
                    continue
                continue
            cmd = ImapCommand(bytes(self.cur), [bytes(x) for x in self.lits])
            cmd.already_sent = self.sync_flush
            out.append(("cmd", cmd))
            self.cur = bytearray()
            self.lits = []
            self.sync_flush = 0
        return out


class Session:
    """One proxied connection."""

    def __init__(self, proxy, num, client, server):
        self.proxy = proxy
        self.num = num
        self.client = client
        self.server = server
        self.counts = {"c2s": 0, "s2c": 0}       # bytes seen (before rules)
        self.forwarded = {"c2s": 0, "s2c": 0}    # bytes passed on
        self.transcript = {"c2s": bytearray(), "s2c": bytearray()}
        self.holding = {"c2s": False, "s2c": False}
        self.closed = threading.Event()
        self.send_lock = {"c2s": threading.Lock(), "s2c": threading.Lock()}
        self.matches: dict = {}                  # rule id -> matches so far
        self.scan_tail = {"c2s": b"", "s2c": b""}
        self.commands: list = []                 # ImapCommand, as received
        self.splitter = _CommandSplitter() if proxy.commands else None
        self.events: list = []
        # action "delay": the client's bytes kept back from the point on
        self.delayed = None                      # bytearray once delaying
        self.client_gone = threading.Event()
        self.released = False
        self.late = bytearray()                  # the server's words after release

    # -------------------------------------------------------- actions
    def _sock_for(self, direction):
        return self.server if direction == "c2s" else self.client

    def send(self, direction, data: bytes):
        if not data or self.closed.is_set():
            return
        if self.delayed is not None:
            if direction == "c2s":
                with self.proxy.lock:
                    if not self.released:
                        self.delayed += data
                        return
            else:
                if self.released:
                    with self.proxy.lock:
                        self.late += data
                if self.client_gone.is_set():
                    return
        if self.holding[direction]:
            return
        # Recorded before it goes out: once the other side has it, a test
        # that reads the transcript finds it there.
        keep = self.proxy.keep_bytes
        t = self.transcript[direction]
        if len(t) < keep:
            t += data[:keep - len(t)]
        with self.send_lock[direction]:
            try:
                self._sock_for(direction).sendall(data)
            except OSError:
                if self.delayed is not None and direction == "s2c":
                    # The client is gone; the server side stays open.
                    self.client_gone.set()
                    return
                self.cut()
                return
        self.forwarded[direction] += len(data)

    def to_client(self, data: bytes):
        """Send bytes to the client (as if the server had said them)."""
        with self.send_lock["s2c"]:
            try:
                self.client.sendall(data)
            except OSError:
                pass

    def to_server(self, data: bytes):
        with self.send_lock["c2s"]:
            try:
                self.server.sendall(data)
            except OSError:
                pass

    def cut(self, rst=False):
        if self.closed.is_set():
            return
        self.closed.set()
        if rst:
            try:
                self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            except OSError:
                pass
        for s in (self.client, self.server):
            close(s)

    def hold_dir(self, which, seconds):
        dirs = ("c2s", "s2c") if which == "both" else (which,)
        for d in dirs:
            self.holding[d] = True

        def later():
            if not self.closed.wait(seconds):
                self.cut()
        threading.Thread(target=later, daemon=True).start()

    def start_delay(self, seconds):
        with self.proxy.lock:
            if self.delayed is None:
                self.delayed = bytearray()

        def later():
            if not self.closed.wait(seconds):
                self.release()
        threading.Thread(target=later, daemon=True).start()

    def delayed_commands(self):
        """The complete IMAP commands kept back so far."""
        with self.proxy.lock:
            data = bytes(self.delayed or b"")
        return [item for kind, item in _CommandSplitter().feed(data) if kind == "cmd"]

    def release(self, timeout=30.0):
        """Forward the kept-back bytes to the server, wait (at most
        `timeout` s) for the tagged reply to each complete command among
        them, then close.  Returns what the server said meanwhile."""
        with self.proxy.lock:
            if self.delayed is None or self.released:
                return bytes(self.late)
            self.released = True
            data = bytes(self.delayed)
        tags = [item.tag.encode() for kind, item in _CommandSplitter().feed(data)
                if kind == "cmd"]
        self.events.append((time.monotonic(), "release", len(data)))
        try:
            with self.send_lock["c2s"]:
                self.server.sendall(data)
        except OSError:
            tags = []
        deadline = time.monotonic() + timeout
        while tags and not self.closed.is_set() and time.monotonic() < deadline:
            with self.proxy.lock:
                late = bytes(self.late)
            if all(re.search(rb"^" + re.escape(tag) + rb" (OK|NO|BAD)\b", late, re.M)
                   for tag in tags):
                break
            time.sleep(0.02)
        self.cut()
        with self.proxy.lock:
            return bytes(self.late)

    # -------------------------------------------------------- rules
    def _rules(self, direction):
        out = []
        for r in self.proxy.rules:
            if r.direction != direction:
                continue
            if r.session is not None and r.session != self.num:
                continue
            if r.once and r.fired > 0 and r.action != "replace":
                continue
            out.append(r)
        return out

    def _fire_points(self, direction, chunk: bytes, base: int):
        """[(position in chunk, end of the match in chunk, rule)] of the
        rules that fire in this chunk, in stream order."""
        points = []
        tail = self.scan_tail[direction]
        text = tail + chunk
        start_abs = base - len(tail)
        for r in self._rules(direction):
            if r.match is None:
                pos = r.offset - base
                if 0 <= pos < len(chunk):
                    points.append((pos, pos, r))
                continue
            state = self.matches.setdefault(id(r), {"n": 0, "last": -1, "armed": None})
            if state["armed"] is not None:
                # A match was seen; its offset lies further on.
                pos = state["armed"] - base
                if 0 <= pos < len(chunk):
                    points.append((pos, pos, r))
                    state["armed"] = None
                continue
            for m in r.match.finditer(text):
                mstart = start_abs + m.start()
                if mstart <= state["last"]:
                    continue
                state["last"] = mstart
                state["n"] += 1
                if r.nth not in (0, state["n"]):
                    continue
                mend = max(0, m.end() - len(tail))
                if r.action == "replace":
                    if m.start() < len(tail):
                        continue        # began in an earlier chunk: too late
                    points.append((m.start() - len(tail), mend, r))
                    continue
                anchor = (mstart if r.at == "start" else start_abs + m.end()) + r.offset
                pos = max(0, anchor - base)
                if pos < len(chunk) or (pos == len(chunk) and r.offset == 0):
                    points.append((pos, max(pos, mend), r))
                else:
                    state["armed"] = anchor
                if r.nth != 0:
                    break
        window = max((r.window for r in self.proxy.rules if r.direction == direction),
                     default=0)
        t = text[-window:] if window else b""
        if len(text) > window:
            # Start the kept tail at a line start, so "^" means what it says.
            nl = t.find(b"\n")
            t = t[nl + 1:] if nl >= 0 else b""
        self.scan_tail[direction] = t
        points.sort(key=lambda p: p[0])
        return points

    def process(self, direction, chunk: bytes):
        """Apply the rules to a chunk and forward what survives."""
        base = self.counts[direction]
        self.counts[direction] += len(chunk)
        if direction == "c2s" and self.delayed is not None:
            self.send(direction, chunk)          # kept back
            return
        points = self._fire_points(direction, chunk, base)
        done = 0
        for pos, end, r in points:
            if self.closed.is_set():
                return
            if pos < done:
                continue
            self.send(direction, chunk[done:pos])
            done = pos
            with self.proxy.lock:
                r.fired += 1
                self.proxy.fired_log.append((self.num, r.name, base + pos))
            self.events.append((time.monotonic(), r.name, base + pos))
            act = r.action
            if act == "cut":
                self.cut(rst=r.rst)
                return
            if act == "hold":
                self.hold_dir(r.hold, r.hold_seconds)
                continue
            if act == "inject":
                if r.drop:
                    done = end
                self.to_client(r.data)
                if r.then_cut:
                    self.cut(rst=r.rst)
                    return
                continue
            if act == "replace":
                self.send(direction, r.data)
                done = end
                continue
            if act == "delay":
                self.start_delay(r.hold_seconds)
                self.send(direction, chunk[done:])
                return
            if act == "call":
                verdict = r.fn(self) if r.fn else None
                if verdict == "cut":
                    self.cut(rst=r.rst)
                    return
                if verdict == "hold":
                    self.hold_dir(r.hold, r.hold_seconds)
                continue
        self.send(direction, chunk[done:])

    # -------------------------------------------------------- pumps
    def pump(self, direction):
        src = self.client if direction == "c2s" else self.server
        try:
            while not self.closed.is_set():
                try:
                    data = src.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                if direction == "c2s" and self.splitter is not None:
                    for kind, item in self.splitter.feed(data):
                        if self.closed.is_set():
                            break
                        if kind == "raw":
                            self.process(direction, item)
                            continue
                        self.commands.append(item)
                        out = self.proxy.commands(item, self)
                        payload = item.data[item.already_sent:] if out is None else out
                        if payload:
                            self.process(direction, payload)
                else:
                    self.process(direction, data)
        finally:
            # The client went away, or the server closed: end the session
            # (a connection whose replies are held stays open for its time,
            # and one whose commands are delayed until release()).
            if direction == "c2s" and self.delayed is not None and not self.released:
                self.client_gone.set()
                try:
                    self.client.close()
                except OSError:
                    pass
            elif direction == "c2s" or not self.holding["s2c"]:
                self.cut()


class FaultProxy(Relay):
    """A Relay whose connections are Sessions: the rules act on their
    byte streams."""

    thread_name = "faultproxy"

    def __init__(self, target_port, target_host=LOOPBACK, rules=(), commands=None,
                 name="proxy", keep_bytes=65536):
        super().__init__(target_port, target_host, name)
        self.rules = list(rules)
        self.commands = commands
        self.keep_bytes = keep_bytes
        self.sessions: list[Session] = []
        self.fired_log: list = []

    # ------------------------------------------------------------ config
    def url(self, proto):
        return f"{proto}://{LOOPBACK}:{self.port}"

    def heal(self):
        """No more faults: forward everything as it is."""
        self.rules = []
        self.commands = None

    def fired(self):
        with self.lock:
            return list(self.fired_log)

    def fired_names(self):
        return [n for _, n, _ in self.fired()]

    def delayed_sessions(self):
        with self.lock:
            return [s for s in self.sessions if s.delayed is not None]

    def delayed_commands(self):
        """The complete IMAP commands kept back by "delay" rules so far
        (and not yet released), over all sessions."""
        return [c for s in self.delayed_sessions() if not s.released
                for c in s.delayed_commands()]

    def release(self, timeout=30.0):
        """Forward what "delay" rules kept back to the server, session by
        session; wait for the server's tagged replies, close.  Returns what
        the server answered to the late commands (bytes)."""
        out = b""
        for s in self.delayed_sessions():
            if not s.released:
                out += s.release(timeout)
        return out

    def transcript(self, session=None, direction="c2s", limit=3000):
        with self.lock:
            ss = [s for s in self.sessions if session is None or s.num == session]
        out = []
        for s in ss:
            text = bytes(s.transcript[direction][:limit]).decode("latin-1")
            out.append(f"  [{s.num}] {direction}: {text!r}")
        return "\n".join(out)

    # ------------------------------------------------------------ lifecycle
    def _end_sessions(self):
        with self.lock:
            sessions = list(self.sessions)
        for s in sessions:
            s.cut()
        super()._end_sessions()

    def wait_idle(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(s.closed.is_set() for s in self.sessions):
                    return True
            time.sleep(0.02)
        return False

    def accepted(self, c, num):
        try:
            srv = self.connect()
        except OSError:
            c.close()
            return
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            sess = Session(self, len(self.sessions) + 1, c, srv)
            self.sessions.append(sess)
        for d in ("c2s", "s2c"):
            self._spawn(sess.pump, (d,), f"{self.name}-{sess.num}-{d}")
