#!/usr/bin/python3
"""The minimal pipelined bridge (issue 15's yardstick): what a page of
Python does when it only cares about keeping the link full.

    MINIMAL_POP3_PASSWORD=... MINIMAL_IMAP_PASSWORD=... python3 bench/minimal.py \\
        --pop3 localhost:PORT --pop3-user U --imap localhost:PORT \\
        --imap-user U --ca-file CA [--mailbox INBOX] [--limit N]

pop3s and imaps with the given CA, blocking sockets, one thread each (TLS
and I/O run in C, outside the interpreter lock); the two logins run side
by side, each one command at a time.  Then every RETR goes out in one write (POP3
PIPELINING), and each message, as soon as it has arrived whole, goes out
as an APPEND with flags () and its Date as INTERNALDATE: a LITERAL+ literal
({N+}) with nothing awaited, or, where the server offers no LITERAL+
(Gmail-like), a synchronising literal: the command line, the server's "+",
the literal, and the next command line right after it (one round trip a
message).  No batches, no ledger, no fsync, nothing bounded: whatever the
IMAP side has not sent yet waits in memory.  The tagged replies are read
whenever some have come (between two APPENDs, never waited for) and
checked at the end.  The POP3 messages are kept.

Prints one line of JSON: {"messages": N, "bytes": N, "mode": "literal+"
or "sync"}.  Exits non-zero if anything fails.
"""

import argparse
import email.utils
import json
import os
import queue
import re
import select
import socket
import ssl
import sys
import threading

DATE_RE = re.compile(rb"^Date:[ \t]*(.*(?:\r\n[ \t].*)*)", re.M | re.I)
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
READ = 1 << 20


def hostport(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imap_date(msg):
    """The Date header as an IMAP date-time, or None."""
    m = DATE_RE.search(msg, 0, max(0, msg.find(b"\r\n\r\n")))
    t = m and email.utils.parsedate_tz(" ".join(m.group(1).decode("latin-1").split()))
    if not t:
        return None
    off = (t[9] or 0) // 60
    sign, off = ("-", -off) if off < 0 else ("+", off)
    return (f'"{t[2]:02d}-{MONTHS[t[1] - 1]}-{t[0]:04d} {t[3]:02d}:{t[4]:02d}:{t[5]:02d} '
            f'{sign}{off // 60:02d}{off % 60:02d}"')


def connect(hp, ctx):
    s = socket.create_connection(hp, timeout=300)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(s, server_hostname=hp[0])


def pop3_login(args, ctx, out):
    s = connect(args.pop3, ctx)
    f = s.makefile("rb")

    def cmd(line):
        if line:
            s.sendall(line.encode() + b"\r\n")
        reply = f.readline()
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"POP3 {line.split()[0] if line else 'greeting'}: {reply!r}")
        return reply

    cmd(None)
    cmd(f"USER {args.pop3_user}")
    cmd(f"PASS {os.environ['MINIMAL_POP3_PASSWORD']}")
    n = int(cmd("STAT").split()[1])
    out["pop3"] = (s, f, min(n, args.limit) if args.limit else n)


def imap_login(args, ctx, out):
    s = connect(args.imap, ctx)
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"L LOGIN {quote(args.imap_user)} "
              f"{quote(os.environ['MINIMAL_IMAP_PASSWORD'])}\r\n".encode())
    caps = b""
    while True:
        line = f.readline()
        if line.startswith(b"* CAPABILITY ") or b"[CAPABILITY " in line:
            caps += line.upper()
        if line.startswith(b"L ") or not line:
            break
    if not line.startswith(b"L OK"):
        raise RuntimeError(f"IMAP LOGIN: {line!r}")
    out["imap"] = (s, f, re.search(rb"[ \[]LITERAL\+[ \]\r]", caps) is not None)


def threads(*fns):
    """Run the functions side by side; re-raise the first error."""
    errors = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:      # noqa: BLE001 - reported by the caller
            errors.append(e)

    ts = [threading.Thread(target=wrap, args=(fn,), daemon=True) for fn in fns]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def run(args):
    ctx = ssl.create_default_context(cafile=args.ca_file)
    out = {}
    threads(lambda: pop3_login(args, ctx, out), lambda: imap_login(args, ctx, out))
    (ps, pf, n), (ims, imf, plus) = out["pop3"], out["imap"]
    msgs = queue.SimpleQueue()      # read, not yet sent: unbounded
    tagged = []
    total = [0]
    rbuf = bytearray()

    def pop3_reader():
        ps.sendall(b"".join(b"RETR %d\r\n" % i for i in range(1, n + 1)))
        buf = bytearray()
        for _ in range(n):
            while (i := buf.find(b"\r\n")) < 0:       # the status line
                buf += pf.read1(READ) or fail("the POP3 server closed the connection")
            if not buf.startswith(b"+OK"):
                fail(f"RETR: {bytes(buf[:i])!r}")
            del buf[:i + 2]
            scan = 0
            while True:                                 # the body, up to CRLF . CRLF
                if buf.startswith(b".\r\n"):
                    end, skip = 0, 3
                    break
                j = buf.find(b"\r\n.\r\n", scan)
                if j >= 0:
                    end, skip = j + 2, j + 5
                    break
                scan = max(0, len(buf) - 4)
                buf += pf.read1(READ) or fail("the POP3 server closed the connection")
            msg = bytes(buf[:end]).replace(b"\r\n..", b"\r\n.")
            if msg.startswith(b".."):
                msg = msg[1:]
            del buf[:skip]
            msgs.put(msg)
        ps.sendall(b"QUIT\r\n")

    # One thread per connection: an SSL socket must not be read and
    # written by two threads at once.  The IMAP thread sends, and reads
    # whatever replies have come in between (without waiting for them).
    def imap_lines(wait):
        """Parse the replies read so far; with wait, read until one more
        line (a "+" or a tagged reply) has come."""
        while True:
            while (i := rbuf.find(b"\n")) >= 0:
                line = bytes(rbuf[:i + 1])
                del rbuf[:i + 1]
                if line.startswith(b"+"):
                    return line
                if not line.startswith(b"*"):
                    tagged.append(line)
                    if wait:
                        return line
            if not wait and not ims.pending() and not select.select([ims], [], [], 0)[0]:
                return None
            rbuf.extend(ims.recv(READ) or fail("the IMAP server closed the connection"))

    def imap_writer():
        mbox = quote(args.mailbox)
        for k in range(1, n + 1):
            msg = msgs.get()
            date = imap_date(msg)
            lead = f"A{k} APPEND {mbox} () {date + ' ' if date else ''}"
            if plus:
                ims.sendall(f"{lead}{{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
                imap_lines(wait=False)
            else:
                ims.sendall(f"{lead}{{{len(msg)}}}\r\n".encode())
                while not (imap_lines(wait=True) or b"").startswith(b"+"):
                    pass
                ims.sendall(msg + b"\r\n")
            total[0] += len(msg)
        while len(tagged) < n:
            imap_lines(wait=True)

    threads(pop3_reader, imap_writer)
    bad = [t for t in tagged if not re.match(rb"A\d+ OK", t)]
    if bad:
        raise RuntimeError(f"{len(bad)} APPEND(s) refused, e.g. {bad[0]!r}")
    ims.sendall(b"Z LOGOUT\r\n")
    for s in (ps, ims):
        s.close()
    return {"messages": n, "bytes": total[0], "mode": "literal+" if plus else "sync"}


def fail(why):
    raise RuntimeError(why)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pop3", required=True, type=hostport)
    ap.add_argument("--pop3-user", required=True)
    ap.add_argument("--imap", required=True, type=hostport)
    ap.add_argument("--imap-user", required=True)
    ap.add_argument("--ca-file", required=True)
    ap.add_argument("--mailbox", default="INBOX")
    ap.add_argument("--limit", type=int, default=0, help="copy at most N messages")
    args = ap.parse_args()
    try:
        res = run(args)
    except Exception as e:
        print(f"minimal.py: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
