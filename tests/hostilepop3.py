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

    def _session(self, sock, sid):
        if self.sndbuf:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            except OSError:
                pass
        sess = _HostileSession(self, sock, sid)
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

    def run(self):
        srv = self.srv
        if srv.greeting_raw is not None:
            g = srv.greeting_raw
            if callable(g):
                g(self)
            else:
                self.send(g)
        elif srv.greeting is not None:
            self.line(srv.greeting)
        if srv.after_greeting == "close":
            raise _Closed()
        if srv.after_greeting == "stall":
            self.stall()
        while True:
            text = self.readline()
            verb, _, arg = text.partition(" ")
            verb = verb.upper()
            if verb == "PASS":
                srv._record(self.sid, "PASS <hidden>")
            elif verb == "AUTH" and len(arg.split()) > 1:
                srv._record(self.sid, f"AUTH {arg.split()[0]} <hidden>")
            else:
                srv._record(self.sid, text)
            action = srv.faults.get(verb)
            if action is not None and self.fault(action):
                continue
            raw = srv.raw_replies.get(verb)
            if raw is not None and (self.state == "TRANSACTION"
                                    or verb in ("CAPA", "USER", "PASS", "AUTH")):
                if callable(raw):
                    raw(self, arg.strip())
                else:
                    self.send(raw)
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
            self._extra(srv.extra_before, verb)
            handler(arg.strip())
            self._extra(srv.extra_after, verb)

    # sizes that may lie
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

    def cmd_RETR(self, arg):
        if self._body_fault(self.srv.retr_fault, arg,
                            lambda m: self._stuffed(m)[:-3]):
            return
        try:
            num = int(arg.split()[0])
        except (ValueError, IndexError):
            num = None
        fn = self.srv.retr_stream.get(num)
        if fn is not None:
            self.line(f"+OK {self.srv.announce.get(num, 0)} octets")
            fn(self)
            return
        n, m = self.msg(arg)
        if m is None:
            return
        self.line(f"+OK {self.size_of(n, m)} octets")
        self.send(self._stuffed(m))

    def _stuffed(self, m: Message) -> bytes:
        if self.srv.raw_wire:
            return stuff_raw(m.wire)
        from fakepop3 import dot_stuff
        return dot_stuff(m.wire) + b".\r\n"
