"""A scripted fake POP3 server for popbridge's tests.

Python 3 standard library only; one thread per connection; plaintext on
127.0.0.1 on a free port.  It does what a real server (Dovecot) will not do
on demand: forget UIDL, cut a message off mid-way, refuse one RETR, send a
listing that does not add up, greet with nonsense, stall.

    srv = FakePOP3([raw1, raw2], uidl=False, retr_fault={2: "cut"}).start()
    pop3 = srv.pop3_block()          # the `pop3 = { ... }` group for a config
    ...popbridge runs...
    srv.remaining()                  # messages still in the maildrop
    srv.command_names()              # ["CAPA", "AUTH", "STAT", ...]
    srv.stop()

What it implements (RFC 1939, RFC 2449 CAPA, RFC 5034 SASL PLAIN):

* the greeting, CAPA, USER/PASS, AUTH PLAIN (with or without an initial
  response; "+ " then the base64 line), QUIT in either state;
* STAT, LIST [n], UIDL [n], RETR n, TOP n k, DELE n, NOOP, RSET, QUIT;
* DELE only marks a message; the marks are committed (the messages removed
  from the maildrop) only when QUIT is received in the TRANSACTION state.
  A session that ends any other way deletes nothing;
* messages go out as CRLF lines (a bare LF becomes CRLF, a final CRLF is
  added if missing), every line that starts with "." is dot-stuffed, and
  ".CRLF" ends the body.  LIST and STAT sizes are the octets of that CRLF
  form before stuffing.

The scripted behaviour (all keyword arguments; each is an attribute that a
test may change between runs, e.g. `srv.retr_fault = {}`):

  uidl=False         UIDL answers -ERR and CAPA does not list UIDL
  uidls=[...]        the unique-ids of the messages (default: generated)
  capa=[...]         the CAPA lines (default: TOP, USER, [SASL PLAIN],
                     [UIDL]); sasl=False leaves out SASL PLAIN, so the
                     client must use USER/PASS
  greeting="..."     the first line (default "+OK fakepop3 ready");
                     None sends no greeting at all
  after_greeting=    None (serve), "close" (close the connection right after
                     the greeting) or "stall" (read nothing, answer nothing
                     for stall_seconds, then close)
  faults={"STAT": "err"}  a fault for a command whatever its argument
  retr_fault={2: "cut"}   a fault for RETR of that message number
  retr_fault_uidl={"u7": "cut"}  a fault for RETR of the message with that
                     UIDL, whatever its number in the session (it follows
                     the message when others before it are deleted)
  top_fault={1: "err"}    the same for TOP
  uidl_lines=[...]   the body of the UIDL listing, sent as given (no check
                     against STAT): e.g. ["1 a", "2 a"] or ["1 a", "9 b"]
  list_lines=[...]   the same for LIST
  stat_reply="..."   the STAT line after "+OK " as given (e.g. "5 1000")

Fault actions: "trickle" (RETR/TOP: +OK, then the body one byte every
trickle_seconds), "err" (answer -ERR), "temp" (answer -ERR [SYS/TEMP] ..., RFC
3206), "close" (close the connection without
an answer), "stall" (answer nothing for stall_seconds, then close), "cut"
(RETR/TOP: send +OK and the first half of the body, then close), "cutstall"
(RETR/TOP: send +OK and the first half of the body, then stall).

Every RETR of an existing message is recorded in `retrs` as (session
number, message number, UIDL), faulty ones too: `retrieved()` gives the
UIDLs asked for.  `remove(uidl)` takes a message out of the maildrop as
someone else (another client, the provider) would.

What was received is recorded in `commands` as (session number, line)
with every secret replaced: a PASS argument, an AUTH initial response and
every SASL continuation line are recorded as "<hidden>".  Nothing is
written to any file.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import threading
import time

from loopserver import LOOPBACK, LoopbackServer
HIDDEN = "<hidden>"

FAULT_ACTIONS = ("err", "temp", "close", "stall", "cut", "cutstall", "trickle")


def wire_form(raw: bytes) -> bytes:
    """The message as CRLF lines with a final CRLF (before dot-stuffing)."""
    data = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def dot_stuff(data: bytes) -> bytes:
    """Dot-stuff CRLF text that ends with CRLF (RFC 1939 section 3)."""
    lines = data.split(b"\r\n")
    # data ends with CRLF, so the last element is the empty rest.
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n"
                    for ln in lines[:-1])


def header_part(data: bytes) -> tuple[bytes, bytes]:
    """Split CRLF text into (header including the blank line, body)."""
    if data.startswith(b"\r\n"):
        return b"\r\n", data[2:]
    i = data.find(b"\r\n\r\n")
    if i < 0:
        return data, b""
    return data[:i + 4], data[i + 4:]


class Message:
    __slots__ = ("raw", "wire", "uidl", "serial")

    def __init__(self, raw: bytes, uidl: str, serial: int):
        self.raw = bytes(raw)
        self.wire = wire_form(self.raw)
        self.uidl = uidl
        self.serial = serial

    @property
    def size(self):
        return len(self.wire)


class _Closed(Exception):
    """The session ends (the client went away or a fault closed it)."""


class FakePOP3(LoopbackServer):
    thread_name = "fakepop3"

    def __init__(self, messages=(), *, user="fakeuser", password=None,
                 uidl=True, uidls=None, capa=None, sasl=True,
                 greeting="+OK fakepop3 ready", after_greeting=None,
                 faults=None, retr_fault=None, top_fault=None, retr_fault_uidl=None,
                 uidl_lines=None, list_lines=None, stat_reply=None,
                 stall_seconds=60.0, idle_timeout=120.0, trickle_seconds=1.0):
        self.user = user
        self.password = password if password is not None else \
            "fake-" + os.urandom(6).hex()
        self.uidl = uidl
        self.capa = capa
        self.sasl = sasl
        self.greeting = greeting
        self.after_greeting = after_greeting
        self.faults = dict(faults or {})
        self.retr_fault = dict(retr_fault or {})
        self.top_fault = dict(top_fault or {})
        self.retr_fault_uidl = dict(retr_fault_uidl or {})
        self.uidl_lines = uidl_lines
        self.list_lines = list_lines
        self.stat_reply = stat_reply
        self.stall_seconds = stall_seconds
        self.trickle_seconds = trickle_seconds
        self.idle_timeout = idle_timeout

        self.lock = threading.RLock()
        self.maildrop: list[Message] = []
        self.committed: list[Message] = []    # removed by a QUIT, in order
        self.commands: list[tuple[int, str]] = []
        self.retrs: list[tuple[int, int, str]] = []   # (session, number, UIDL)
        self.logins = 0                       # successful logins
        self.failed_logins = 0
        self.quits = 0                        # QUITs that committed (TRANSACTION)
        self.sessions = 0                     # connections accepted
        self._active = 0
        self._serial = 0
        self._listen_init()
        self._socks: set[socket.socket] = set()
        uidls = list(uidls) if uidls is not None else []
        for i, raw in enumerate(messages):
            self.add(raw, uidls[i] if i < len(uidls) else None)

    # ------------------------------------------------------------ mailbox
    def add(self, raw: bytes, uidl: str | None = None) -> Message:
        """Deliver a message (it gets the next number in new sessions)."""
        with self.lock:
            self._serial += 1
            if uidl is None:
                uidl = "fp%05d-%s" % (self._serial,
                                      hashlib.sha1(raw).hexdigest()[:16])
            m = Message(raw, uidl, self._serial)
            self.maildrop.append(m)
            return m

    def remove(self, uidl: str | None = None, index: int | None = None) -> Message:
        """Take a message out of the maildrop (by UIDL, the first with it,
        or by its index in the maildrop), as another client would; sessions
        already logged in keep their view.  Returns it."""
        with self.lock:
            if index is None:
                index = next(i for i, m in enumerate(self.maildrop) if m.uidl == uidl)
            return self.maildrop.pop(index)

    def remaining_uidls(self) -> list[str]:
        with self.lock:
            return [m.uidl for m in self.maildrop]

    def retrieved(self, session=None, since_session=0) -> list[str]:
        """The UIDLs of the messages asked for with RETR (faulty RETRs
        too), in order; only in `session`, or in sessions after
        `since_session`."""
        with self.lock:
            return [u for s, _, u in self.retrs
                    if (session is None or s == session) and s > since_session]

    def remaining(self) -> list[bytes]:
        """The raw bytes of the messages still in the maildrop, in order."""
        with self.lock:
            return [m.raw for m in self.maildrop]

    def deleted(self) -> list[bytes]:
        """The raw bytes of the messages removed by a committed QUIT."""
        with self.lock:
            return [m.raw for m in self.committed]

    # ------------------------------------------------------------ records
    def command_lines(self, session=None) -> list[str]:
        with self.lock:
            return [c for s, c in self.commands if session is None or s == session]

    def command_names(self, session=None) -> list[str]:
        """The verbs received (upper case), e.g. ["CAPA", "AUTH", "STAT"]."""
        return [c.split(" ", 1)[0].upper() for c in self.command_lines(session)
                if c != HIDDEN]

    def transcript(self) -> str:
        """Every received line (secrets hidden), for assertion messages."""
        with self.lock:
            return "\n".join(f"  [{s}] C: {c}" for s, c in self.commands)

    def wait_idle(self, timeout=10.0) -> bool:
        """Wait until no session is open; True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self._active == 0:
                    return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------ config
    @property
    def url(self):
        return f"pop3://{LOOPBACK}:{self.port}"

    def pop3_block(self, **extra) -> dict:
        """The `pop3 = { ... }` group of a popbridge account for this server
        (plaintext, allowed explicitly with tls = "none")."""
        b = {"url": self.url, "user": self.user, "password": self.password,
             "tls": "none"}
        b.update(extra)
        return b

    # ------------------------------------------------------------ lifecycle
    def _end_sessions(self):
        with self.lock:
            socks = list(self._socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accepted(self, c):
        with self.lock:
            self.sessions += 1
            self._active += 1
            sid = self.sessions
            self._socks.add(c)
        self._spawn(self._session, (c, sid), f"{self.port}-{sid}")

    # ------------------------------------------------------------ session
    def prepare_socket(self, sock):
        """Hook: set up a new connection's socket before the session starts."""

    def _session(self, sock, sid):
        self.prepare_socket(sock)
        sess = self.session_class(self, sock, sid)
        try:
            sess.run()
        except (_Closed, OSError):
            pass
        finally:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
            with self.lock:
                self._socks.discard(sock)
                self._active -= 1

    def _record(self, sid, line):
        with self.lock:
            self.commands.append((sid, line))

    def _capa_lines(self):
        if self.capa is not None:
            return list(self.capa)
        lines = ["TOP", "USER"]
        if self.sasl:
            lines.append("SASL PLAIN")
        if self.uidl:
            lines.append("UIDL")
        lines.append("RESP-CODES")
        lines.append("IMPLEMENTATION fakepop3")
        return lines


class _Session:
    """One connection.  A server with other behaviour subclasses it (and
    names the subclass as its session_class) and overrides the hooks:
    greet, intercept, call, size_of, stuffed, or a cmd_VERB."""

    def __init__(self, srv: FakePOP3, sock, sid):
        self.srv = srv
        self.sock = sock
        self.sid = sid
        self.rfile = sock.makefile("rb")
        self.state = "AUTHORIZATION"
        self.user = None
        self.msgs: list[Message] = []        # the maildrop as of the login
        self.marked: set[int] = set()        # message numbers marked deleted
        sock.settimeout(srv.idle_timeout)

    # ---------------------------------------------------------- I/O
    def send(self, data: bytes):
        try:
            self.sock.sendall(data)
        except OSError:
            raise _Closed()

    def line(self, text: str):
        self.send(text.encode("utf-8", "replace") + b"\r\n")

    def readline(self) -> str:
        try:
            raw = self.rfile.readline(8192)
        except (OSError, ValueError):
            raise _Closed()
        if not raw:
            raise _Closed()
        return raw.rstrip(b"\r\n").decode("utf-8", "replace")

    def stall(self):
        """Answer nothing for stall_seconds (or until stop()), then close."""
        self.srv._stop.wait(self.srv.stall_seconds)
        raise _Closed()

    def fault(self, action, body: bytes | None = None):
        """Carry out a fault action; returns True once it has answered."""
        if action not in FAULT_ACTIONS:
            raise ValueError(f"fakepop3: unknown fault action {action!r}")
        if action == "err":
            self.line("-ERR scripted failure")
            return True
        if action == "temp":
            self.line("-ERR [SYS/TEMP] scripted failure, try again later")
            return True
        if action == "close":
            raise _Closed()
        if action == "stall":
            self.stall()
        if action in ("cut", "cutstall"):
            if body is None:
                self.line("-ERR no such message")
                return True
            self.line("+OK message follows")
            self.send(body[:len(body) // 2])
            if action == "cut":
                raise _Closed()
            self.stall()
        if action == "trickle":
            # One byte every trickle_seconds: never silent long enough
            # for a per-wait timeout, so only a deadline ends it.
            if body is None:
                self.line("-ERR no such message")
                return True
            self.line("+OK message follows")
            for i in range(len(body)):
                if self.srv._stop.wait(self.srv.trickle_seconds):
                    raise _Closed()
                self.send(body[i:i + 1])
            return True
        raise ValueError(f"fakepop3: unknown fault action {action!r}")

    # ---------------------------------------------------------- hooks
    def greet(self):
        """Send the greeting."""
        if self.srv.greeting is not None:
            self.line(self.srv.greeting)

    def intercept(self, verb, arg):
        """Answer a command before its handler (and before the state
        checks); True once it has answered.  Here: the scripted faults."""
        action = self.srv.faults.get(verb)
        return action is not None and self.fault(action)

    def call(self, verb, handler, arg):
        """Run a command's handler (after the state checks)."""
        handler(arg)

    def size_of(self, n, m):
        """The size LIST and STAT report for message n."""
        return m.size

    def stuffed(self, m: Message) -> bytes:
        """What RETR sends after +OK: the dot-stuffed body and ".CRLF"."""
        return dot_stuff(m.wire) + b".\r\n"

    # ---------------------------------------------------------- main loop
    def run(self):
        srv = self.srv
        self.greet()
        if srv.after_greeting == "close":
            raise _Closed()
        if srv.after_greeting == "stall":
            self.stall()
        while True:
            text = self.readline()
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            # Record without secrets.
            if verb == "PASS":
                srv._record(self.sid, "PASS " + HIDDEN)
            elif verb == "AUTH" and len(arg.split()) > 1:
                srv._record(self.sid, f"AUTH {arg.split()[0]} {HIDDEN}")
            else:
                srv._record(self.sid, text)
            if self.intercept(verb, arg):
                continue
            handler = getattr(self, "cmd_" + verb, None) if verb.isalpha() else None
            if handler is None:
                self.line("-ERR unknown command")
                continue
            if verb not in ("CAPA", "QUIT", "USER", "PASS", "AUTH", "APOP") \
                    and self.state != "TRANSACTION":
                self.line("-ERR not logged in")
                continue
            if verb in ("USER", "PASS", "AUTH", "APOP") and self.state != "AUTHORIZATION":
                self.line("-ERR already logged in")
                continue
            self.call(verb, handler, arg.strip())

    # ---------------------------------------------------------- helpers
    def msg(self, arg, allow_marked=False):
        """The message numbered arg, or None after answering -ERR."""
        try:
            n = int(arg.split()[0])
        except (ValueError, IndexError):
            self.line("-ERR invalid message number")
            return None, None
        if n < 1 or n > len(self.msgs):
            self.line("-ERR no such message")
            return None, None
        if n in self.marked and not allow_marked:
            self.line("-ERR message is deleted")
            return None, None
        return n, self.msgs[n - 1]

    def live(self):
        return [(i + 1, m) for i, m in enumerate(self.msgs) if i + 1 not in self.marked]

    def listing(self, lines):
        self.line("+OK listing follows")
        self.send(b"".join(ln.encode() + b"\r\n" for ln in lines) + b".\r\n")

    def login_ok(self, user, password):
        srv = self.srv
        if user == srv.user and password == srv.password:
            with srv.lock:
                srv.logins += 1
                self.msgs = list(srv.maildrop)
            self.state = "TRANSACTION"
            self.line(f"+OK logged in, {len(self.msgs)} messages")
        else:
            with srv.lock:
                srv.failed_logins += 1
            self.line("-ERR [AUTH] Authentication failed.")

    # ---------------------------------------------------------- commands
    def cmd_CAPA(self, arg):
        self.line("+OK capability list follows")
        self.send(b"".join(c.encode() + b"\r\n" for c in self.srv._capa_lines())
                  + b".\r\n")

    def cmd_APOP(self, arg):
        self.line("-ERR APOP not supported")

    def cmd_USER(self, arg):
        self.user = arg
        self.line("+OK send PASS")

    def cmd_PASS(self, arg):
        if self.user is None:
            self.line("-ERR USER first")
            return
        self.login_ok(self.user, arg)

    def cmd_AUTH(self, arg):
        parts = arg.split()
        if not parts:
            self.line("-ERR mechanism required")
            return
        if not self.srv.sasl or parts[0].upper() != "PLAIN":
            self.line("-ERR unsupported authentication mechanism")
            return
        if len(parts) > 1:
            resp = parts[1]
        else:
            self.line("+ ")
            resp = self.readline().strip()
            self.srv._record(self.sid, HIDDEN)
        if resp == "*":
            self.line("-ERR authentication cancelled")
            return
        try:
            authzid, authcid, password = base64.b64decode(resp, validate=True) \
                .decode("utf-8").split("\0")
        except (ValueError, UnicodeDecodeError):
            self.line("-ERR invalid SASL response")
            return
        if authzid not in ("", authcid):
            self.line("-ERR [AUTH] Authentication failed.")
            return
        self.login_ok(authcid, password)

    def cmd_NOOP(self, arg):
        self.line("+OK")

    def cmd_STAT(self, arg):
        if self.srv.stat_reply is not None:
            self.line("+OK " + self.srv.stat_reply)
            return
        live = self.live()
        self.line(f"+OK {len(live)} {sum(self.size_of(n, m) for n, m in live)}")

    def cmd_LIST(self, arg):
        if arg:
            n, m = self.msg(arg)
            if m is not None:
                self.line(f"+OK {n} {self.size_of(n, m)}")
            return
        if self.srv.list_lines is not None:
            self.listing(self.srv.list_lines)
            return
        self.listing([f"{n} {self.size_of(n, m)}" for n, m in self.live()])

    def cmd_UIDL(self, arg):
        if not self.srv.uidl:
            self.line("-ERR UIDL not supported")
            return
        if arg:
            n, m = self.msg(arg)
            if m is not None:
                self.line(f"+OK {n} {m.uidl}")
            return
        if self.srv.uidl_lines is not None:
            self.listing(self.srv.uidl_lines)
            return
        self.listing([f"{n} {m.uidl}" for n, m in self.live()])

    def _body_fault(self, table, arg, body_of):
        try:
            n = int(arg.split()[0])
        except (ValueError, IndexError):
            return False
        action = table.get(n)
        if action is None:
            return False
        body = None
        if 1 <= n <= len(self.msgs):
            body = body_of(self.msgs[n - 1])
        self.fault(action, body)
        return True

    def cmd_RETR(self, arg):
        try:
            num = int(arg.split()[0])
        except (ValueError, IndexError):
            num = 0
        if 1 <= num <= len(self.msgs):
            with self.srv.lock:
                self.srv.retrs.append((self.sid, num, self.msgs[num - 1].uidl))
        if self._body_fault(self.srv.retr_fault, arg, lambda m: self.stuffed(m)[:-3]):
            return
        n, m = self.msg(arg)
        if m is None:
            return
        action = self.srv.retr_fault_uidl.get(m.uidl)
        if action is not None:
            self.fault(action, self.stuffed(m)[:-3])
            return
        self.line(f"+OK {self.size_of(n, m)} octets")
        self.send(self.stuffed(m))

    def _top(self, m, k):
        head, body = header_part(m.wire)
        if k > 0 and body:
            lines = body.split(b"\r\n")[:-1]
            head += b"".join(ln + b"\r\n" for ln in lines[:k])
        return head if head.endswith(b"\r\n") else head + b"\r\n"

    def cmd_TOP(self, arg):
        parts = arg.split()
        try:
            k = int(parts[1])
            if k < 0:
                raise ValueError
        except (ValueError, IndexError):
            self.line("-ERR usage: TOP msg n")
            return
        if self._body_fault(self.srv.top_fault, arg,
                            lambda m: dot_stuff(self._top(m, k))):
            return
        n, m = self.msg(arg)
        if m is None:
            return
        self.line("+OK top of message follows")
        self.send(dot_stuff(self._top(m, k)) + b".\r\n")

    def cmd_DELE(self, arg):
        n, m = self.msg(arg)
        if m is None:
            return
        self.marked.add(n)
        self.line(f"+OK message {n} deleted")

    def cmd_RSET(self, arg):
        self.marked.clear()
        self.line(f"+OK {len(self.msgs)} messages")

    def cmd_QUIT(self, arg):
        srv = self.srv
        if self.state == "TRANSACTION":
            # UPDATE state: commit the marks before answering, so that a
            # client that has seen +OK finds them done.
            with srv.lock:
                gone = [self.msgs[n - 1] for n in sorted(self.marked)]
                ids = {id(m) for m in gone}
                srv.maildrop = [m for m in srv.maildrop if id(m) not in ids]
                srv.committed.extend(gone)
                srv.quits += 1
            self.line(f"+OK bye, {len(gone)} messages deleted")
        else:
            self.line("+OK bye")
        raise _Closed()


FakePOP3.session_class = _Session
