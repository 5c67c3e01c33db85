"""A hostile POP3 server for popbridge's tests: tests/fakepop3.py's scripted
server (unchanged, subclassed here) with the misbehaviours a broken or
malicious server shows that fakepop3 does not script.

    srv = HostilePOP3([raw], raw_replies={"STAT": endless(b"x")}).start()

Keyword arguments beyond FakePOP3's (each an attribute a test may change
between runs):

  raw_wire=True      send each message as its bytes are, with no line-end
                     conversion (a bare LF or CR goes out as it is); only
                     dot-stuffing is applied, to lines after any LF.  LIST
                     and STAT sizes are the bytes before stuffing.
  greeting_raw=B     the greeting as raw bytes (no CRLF added), or a
                     callable(session) that sends whatever it likes
  raw_replies={"STAT": B}   the reply to that command replaced by raw bytes
                     B, or by callable(session, arg) that sends it
  extra_before={"RETR": B}  raw bytes sent before the real reply
  extra_after={"STAT": B}   raw bytes sent after the real reply
                     (both: every time, or only the first `extra_times`)
  announce={n: size} the size LIST (and STAT) report for message n
  retr_stream={n: fn} RETR n answers "+OK" and then fn(session) sends the
                     body itself (see stream_body())
  sndbuf=65536       the server socket's send buffer, so `sent` says
                     closely how far the client really read

`sent` maps a session number to the bytes sent in it; `max_sent()` is the
largest.  Helpers: endless(), stream_body(), garbage().
"""

from __future__ import annotations

import random
import socket

from fakepop3 import FakePOP3, Message, _Closed, _Session


def stuff_raw(data: bytes) -> bytes:
    """Dot-stuff bytes split at LF only (CR kept where it is), ending the
    stream with a line end if it lacks one, and add the terminator."""
    lines = data.split(b"\n")
    tail = lines.pop()                     # after the last LF
    out = [(b"." + ln if ln.startswith(b".") else ln) + b"\n" for ln in lines]
    if tail:
        out.append((b"." + tail if tail.startswith(b".") else tail) + b"\r\n")
    return b"".join(out) + b".\r\n"


def garbage(n, seed=7):
    """n bytes of binary noise with NULs, high bytes and a few CR/LF."""
    rnd = random.Random(seed)
    return bytes(rnd.randrange(256) for _ in range(n))


def endless(chunk=b"A" * 8192, limit=512 << 20, then="close"):
    """A raw reply that sends `chunk` again and again (no newline unless
    chunk has one) until the client goes away or `limit` bytes are out."""
    def send(sess, arg=None):
        n = 0
        while n < limit:
            sess.send(chunk)
            n += len(chunk)
        if then == "stall":
            sess.stall()
        raise _Closed()
    return send


def stream_body(size, terminator=True, then="close", line=b"x" * 78 + b"\r\n",
                stall_first=False):
    """A RETR body of `size` bytes of `line`s, with or without the ".CRLF"
    terminator; afterwards "close", "stall" or carry on ("serve")."""
    def send(sess):
        n = 0
        block = line * max(1, 65536 // len(line))
        while n < size:
            part = block[:size - n]
            sess.send(part)
            n += len(part)
        if terminator:
            sess.send(b"\r\n.\r\n" if not part.endswith(b"\r\n") else b".\r\n")
            if then == "serve":
                return
        if then == "stall":
            sess.stall()
        if then == "serve":
            return
        raise _Closed()
    return send


class HostilePOP3(FakePOP3):
    def __init__(self, messages=(), *, raw_wire=False, greeting_raw=None,
                 raw_replies=None, extra_before=None, extra_after=None,
                 extra_times=None, announce=None, retr_stream=None,
                 sndbuf=65536, **kw):
        self.raw_wire = raw_wire
        super().__init__(messages, **kw)
        self.greeting_raw = greeting_raw
        self.raw_replies = dict(raw_replies or {})
        self.extra_before = dict(extra_before or {})
        self.extra_after = dict(extra_after or {})
        self.extra_times = extra_times
        self.extra_used = 0
        self.announce = dict(announce or {})
        self.retr_stream = dict(retr_stream or {})
        self.sndbuf = sndbuf
        self.sent: dict[int, int] = {}

    def add(self, raw, uidl=None):
        m = super().add(raw, uidl)
        if self.raw_wire:
            m.wire = bytes(raw)
        return m

    def max_sent(self):
        with self.lock:
            return max(self.sent.values(), default=0)

    def prepare_socket(self, sock):
        if self.sndbuf:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            except OSError:
                pass


class _HostileSession(_Session):
    def send(self, data: bytes):
        super().send(data)
        with self.srv.lock:
            self.srv.sent[self.sid] = self.srv.sent.get(self.sid, 0) + len(data)

    def size_of(self, n, m):
        return self.srv.announce.get(n, m.size)

    def _extra(self, table, verb):
        data = table.get(verb)
        if data is None:
            return
        if self.srv.extra_times is not None:
            with self.srv.lock:
                if self.srv.extra_used >= self.srv.extra_times:
                    return
                self.srv.extra_used += 1
        self.send(data)

    def greet(self):
        g = self.srv.greeting_raw
        if g is None:
            super().greet()
        elif callable(g):
            g(self)
        else:
            self.send(g)

    def intercept(self, verb, arg):
        if super().intercept(verb, arg):
            return True
        raw = self.srv.raw_replies.get(verb)
        if raw is None or not (self.state == "TRANSACTION"
                               or verb in ("CAPA", "USER", "PASS", "AUTH")):
            return False
        if callable(raw):
            raw(self, arg.strip())
        else:
            self.send(raw)
        return True

    def call(self, verb, handler, arg):
        self._extra(self.srv.extra_before, verb)
        handler(arg)
        self._extra(self.srv.extra_after, verb)

    def cmd_RETR(self, arg):
        try:
            num = int(arg.split()[0])
        except (ValueError, IndexError):
            num = None
        fn = self.srv.retr_stream.get(num)
        if fn is None or num in self.srv.retr_fault:
            super().cmd_RETR(arg)
            return
        self.line(f"+OK {self.srv.announce.get(num, 0)} octets")
        fn(self)

    def stuffed(self, m: Message) -> bytes:
        if self.srv.raw_wire:
            return stuff_raw(m.wire)
        return super().stuffed(m)


HostilePOP3.session_class = _HostileSession
