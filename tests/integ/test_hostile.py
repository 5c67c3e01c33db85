"""Hostile and broken POP3 servers (issue 6).

A POP3 server can send anything.  tests/hostilepop3.py (a subclass of the
scripted fake server tests/fakepop3.py) feeds popbridge endless lines, a
message with no terminator, a LIST size that lies, duplicate or overlong
UIDLs, UIDL listings that do not match STAT, binary garbage, a greeting
with no +OK, a multi-gigabyte message, replies to commands never sent.

Each must end with a clear error for that account, in bounded time (a
subprocess timeout) and bounded memory (the run's peak RSS, from wait4),
nothing deleted on the POP3 server, and a second, healthy account in the
same config (the private Dovecot, no fake) imported as if nothing happened.

Messages with NUL bytes, bare CR or LF, raw 8-bit headers or lines over
998 characters must be imported without loss: the bytes read back over IMAP
(FETCH BINARY.PEEK[], since NULs travel as literal8) equal the original
after the documented normalisation (LF -> CRLF, bare CR kept, a final CRLF
ensured).
"""

import re

import faultlib as fl
from faultlib import EX_DATAERR, EX_OK, EX_TEMPFAIL
from fakepop3 import _Closed, dot_stuff, wire_form
from faultproxy import FaultProxy, Rule
from hostilepop3 import HostilePOP3, endless, garbage, stream_body

MAX_RSS_KB = 32 * 1024          # bounded memory (an idle run peaks near 14 MB)
QUICK = 20                      # seconds for a run that must fail at once
TIMEOUT_CONF = "timeout = 5;\n"


# ------------------------------------------------------------------ helpers
def msg(t, n, body=None, subject=None, extra=""):
    subject = subject or f"[{t.short}] hostile test message {n}"
    body = body if body is not None else f"Body of message {n}.\nSecond line.\n"
    return (f"Date: Wed, {1 + n % 28} Feb 2024 12:{n % 60:02d}:00 +0000\n"
            f"From: sender{n}@example.org\n"
            f"To: dest@example.net\n"
            f"Subject: {subject}\n"
            f"Message-ID: <h{n}.{t.short}@example.org>\n"
            f"X-Fault-Seq: {t.short}/{n}\n"
            f"{extra}"
            f"\n").encode() + (body if isinstance(body, bytes) else body.encode())


def received_raw(raw):
    """What popbridge receives (after unstuffing) from a raw_wire server."""
    return raw if raw.endswith(b"\n") else raw + b"\r\n"


def received_fake(raw):
    """... from a normal fakepop3 server (LF -> CRLF, final CRLF)."""
    return wire_form(raw)


class Hostile:
    """A hostile server plus a healthy Dovecot account in one config."""

    def __init__(self, t, raws, keep=False, name="hostile", **srv_kw):
        self.t = t
        self.dc = t.dovecot()
        self.raws = raws
        self.name = name
        self.keep = keep
        # A POP3 user of its own: the ledger is named after user@host, and
        # two variants sharing it would skip each other's "imported" mail.
        srv_kw.setdefault("user", f"{name}-{t.short}")
        self.srv = HostilePOP3(raws, **srv_kw).start()
        self.dst = t.user(self.dc, "d")
        self.hsrc, self.hdst = t.user(self.dc, "s"), t.user(self.dc, "d")
        self.hraws = fl.corpus(f"{t.short}ok{len(t.runs)}", 4)
        for raw in self.hraws:
            self.dc.deliver(self.hsrc, raw)

    def close(self):
        self.srv.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def accounts(self):
        bad = fl.account(self.name, self.srv.pop3_block(), fl.imap_block(self.dc, self.dst),
                         keep=self.keep)
        good = fl.account(f"{self.name}ok", fl.pop3_block(self.dc, self.hsrc),
                          fl.imap_block(self.dc, self.hdst), keep=False)
        return [bad, good]

    def run(self, extra="", conf="hostile.conf", timeout=120):
        cfg = self.t.config(self.accounts(), extra=extra, name=conf)
        return fl.run_measured(self.t, "-c", cfg, "-v", "run", timeout=timeout)

    def imported(self):
        return [b for _, b in fl.imap_fetch_binary(self.dc, self.dst)]

    def check_failed_cleanly(self, r, what, pattern, rc=EX_TEMPFAIL, seconds=QUICK):
        """A clear error for the account, in time and memory, nothing
        deleted, nothing changed in IMAP, the healthy account unaffected."""
        problems = []
        wants = rc if isinstance(rc, tuple) else (rc,)
        if r.rc not in wants:
            problems.append(f"exit {r.rc}, expected {' or '.join(map(str, wants))}")
        if r.seconds > seconds:
            problems.append(f"took {r.seconds:.1f} s (limit {seconds} s)")
        if r.maxrss_kb > MAX_RSS_KB:
            problems.append(f"peak memory {r.maxrss_kb // 1024} MB (limit {MAX_RSS_KB // 1024} MB)")
        lines = fl.account_lines(r.stderr, self.name)
        if not lines:
            problems.append(f"no error line naming the account {self.name!r}")
        elif not any(re.search(pattern, line, re.I) for line in lines):
            problems.append(f"no line says what happened (/{pattern}/): {lines[-4:]}")
        self.srv.wait_idle(10)
        if self.srv.remaining() != self.raws:
            problems.append(f"{len(self.raws) - len(self.srv.remaining())} messages were "
                            f"deleted on the hostile server")
        try:
            fl.check_no_loss(self.t, self.raws, self.imported(), self.srv.remaining(),
                             keep=True, what=what, received=received_fake
                             if not self.srv.raw_wire else received_raw)
        except AssertionError as e:
            problems.append(str(e))
        try:
            self.check_healthy(what)
        except AssertionError as e:
            problems.append(str(e))
        assert not problems, f"{what}: " + "; ".join(problems)

    def check_healthy(self, what):
        fl.check_exactly_once(self.t, self.hraws, fl.imap_bodies(self.dc, self.hdst),
                              fl.pop3_bodies(self.dc, self.hsrc),
                              what=f"{what}: the healthy account")


def variants(t, cases, make, what_prefix):
    """Run make(case) for each case, collecting failures so that one broken
    variant does not hide the others."""
    problems = []
    for case in cases:
        try:
            make(case)
        except AssertionError as e:
            problems.append(str(e))
    assert not problems, f"{len(problems)} of {len(cases)} {what_prefix} variants failed: " \
                         + " | ".join(problems)


# ------------------------------------------------------------------ endless lines
def test_endless_lines(t):
    """A reply line that never ends (no newline for far more than 64 KiB):
    as the greeting, the STAT reply, a LIST and a UIDL listing line, the
    RETR status line."""
    A = b"A" * 16384
    cases = [
        ("greeting", dict(greeting_raw=endless(b"+OK " + A, then="stall")), "greet"),
        ("STAT", dict(raw_replies={"STAT": endless(b"+OK 3 " + A[:100], then="stall")}), "STAT"),
        ("LIST", dict(raw_replies={"LIST": endless(b"+OK\r\n1 " + A, then="stall")}), "LIST"),
        ("UIDL", dict(raw_replies={"UIDL": endless(b"+OK\r\n1 " + A, then="stall")}), "UIDL"),
        ("RETR", dict(raw_replies={"RETR": endless(b"+OK " + A, then="stall")}), "RETR"),
    ]

    def make(case):
        label, kw, _ = case
        raws = [msg(t, 1), msg(t, 2), msg(t, 3)]
        with Hostile(t, raws, name=f"endless{label.lower()}", stall_seconds=30, **kw) as h:
            r = h.run(extra=TIMEOUT_CONF)
            h.check_failed_cleanly(r, f"endless {label} line",
                                   r"long|line|excessive|larger|time|too")
    variants(t, cases, make, "endless line")


def test_endless_line_in_body(t):
    """A message body that is one line without end (LIST says 100 KB):
    popbridge stops soon past the announced size, it does not read on."""
    raws = [msg(t, 1), msg(t, 2)]
    with Hostile(t, raws, announce={2: 100_000},
                 retr_stream={2: stream_body(1 << 30, terminator=False, line=b"B" * 65536)}) as h:
        r = h.run(extra=TIMEOUT_CONF)
        h.check_failed_cleanly(r, "endless body line", r"larger than|announced|long")
        assert h.srv.max_sent() < 16 << 20, \
            f"popbridge read on: the server sent {h.srv.max_sent() >> 20} MB for a 100 KB message"


# ------------------------------------------------------------------ no terminator
def test_message_without_terminator(t):
    """RETR sends the whole message but never the ".CRLF" terminator, then
    closes (or stalls): no partial import, nothing deleted."""
    raws = [msg(t, 1), msg(t, 2, body="line\n" * 2000), msg(t, 3)]

    def make(then):
        body = dot_stuff(wire_form(raws[1]))

        def send(sess, body=body, then=then):
            sess.send(body)
            if then == "stall":
                sess.stall()
            raise _Closed()
        with Hostile(t, raws, name=f"noterm{then}", retr_stream={2: send},
                     announce={2: len(wire_form(raws[1]))}, stall_seconds=60) as h:
            r = h.run(extra=TIMEOUT_CONF)
            h.check_failed_cleanly(r, f"no terminator, then {then}",
                                   r"clos|lost|time|no answer")
    variants(t, ["close", "stall"], make, "missing terminator")


# ------------------------------------------------------------------ lying sizes
def test_list_size_lies(t):
    """LIST says 1000 bytes, the message is 64 MB: popbridge refuses to read
    far past the announced size (it allows a quarter and 1 MiB more)."""
    raws = [msg(t, 1), msg(t, 2)]
    with Hostile(t, raws, announce={2: 1000},
                 retr_stream={2: stream_body(64 << 20, terminator=True)}) as h:
        r = h.run()
        h.check_failed_cleanly(r, "LIST size lies", r"larger than|announced")
        sent = h.srv.max_sent()
        t.note(f"the hostile server got {sent / 1e6:.1f} MB out before popbridge stopped")
        assert sent < 12 << 20, f"popbridge read {sent >> 20} MB of a message announced as 1000 B"


def test_list_size_a_little_off(t):
    """LIST a little smaller than the message (servers count differently):
    imported unchanged, then deleted (keep = false)."""
    raws = [msg(t, 1, body="x" * 5000 + "\n"), msg(t, 2)]
    with Hostile(t, raws, announce={1: len(wire_form(raws[0])) - 40}) as h:
        r = h.run()
        fl.assert_rc(r, EX_OK, "LIST a little off")
        fl.check_exactly_once(t, raws, h.imported(), h.srv.remaining(), received=received_fake)
        h.check_healthy("LIST a little off")


# ------------------------------------------------------------------ UIDL
def test_bad_uidl_listings(t):
    """Duplicate UIDLs, overlong ones (71, 300 and 5000 characters), UIDLs
    with control characters, numbers 0 or past STAT, more or fewer lines
    than STAT, non-numeric message numbers: an error naming the problem,
    nothing imported, nothing deleted."""
    cases = [
        # ("1 same", "2 same", "3 other") is no lie: popa3d repeats UIDLs,
        # and popbridge tells such messages apart by content
        # (test_fakepop3.test_listing_with_a_repeated_uidl).
        ("dupnum", ["1 a", "1 b", "3 c"]),
        ("long71", ["1 " + "u" * 71, "2 b", "3 c"]),
        ("long300", ["1 a", "2 " + "u" * 300, "3 c"]),
        ("long5000", ["1 a", "2 b", "3 " + "u" * 5000]),
        ("ctrl", ["1 a\x01b", "2 b", "3 c"]),
        ("spaces", ["1 a b", "2 c", "3 d"]),
        ("zero", ["0 z", "1 a", "2 b"]),
        ("past", ["1 a", "2 b", "4 c"]),
        ("more", ["1 a", "2 b", "3 c", "4 d"]),
        ("fewer", ["1 a", "2 b"]),
        ("nonnum", ["1 a", "two b", "3 c"]),
        ("empty", ["1 a", "2", "3 c"]),
    ]

    def make(case):
        name, lines = case
        raws = [msg(t, 1), msg(t, 2), msg(t, 3)]
        with Hostile(t, raws, name=f"uidl{name}", uidl_lines=lines) as h:
            r = h.run()
            h.check_failed_cleanly(r, f"UIDL listing {name}",
                                   r"UIDL|listing|same|twice|not exist|missing|long|STAT")
            assert "RETR" not in h.srv.command_names(), f"UIDL {name}: RETR was sent"
    variants(t, cases, make, "UIDL listing")


def test_stat_and_list_disagree(t):
    """STAT says 5 messages, LIST and UIDL list 3 (and the reverse): the
    listing must account for every message exactly once."""
    cases = [("statmore", dict(stat_reply="5 3000")), ("statless", dict(stat_reply="2 3000")),
             ("statjunk", dict(stat_reply="three 3000")),
             ("statneg", dict(stat_reply="-1 3000")),
             ("stathuge", dict(stat_reply="4294967296 1"))]

    def make(case):
        name, kw = case
        raws = [msg(t, 1), msg(t, 2), msg(t, 3)]
        with Hostile(t, raws, name=name, **kw) as h:
            r = h.run()
            h.check_failed_cleanly(r, f"STAT {kw['stat_reply']!r}",
                                   r"STAT|LIST|UIDL|listing|messages|malformed")
    variants(t, cases, make, "STAT/LIST")


# ------------------------------------------------------------------ garbage
def test_binary_garbage_replies(t):
    """Binary noise (NULs, high bytes) instead of the reply to STAT, LIST,
    UIDL, RETR, and as the greeting."""
    noise = garbage(3000).replace(b"\n", b"") + b"\r\n"
    cases = [("greeting", dict(greeting_raw=noise)),
             ("STAT", dict(raw_replies={"STAT": noise})),
             ("LIST", dict(raw_replies={"LIST": noise})),
             ("UIDL", dict(raw_replies={"UIDL": noise})),
             ("RETR", dict(raw_replies={"RETR": noise})),
             ("RETRbody", dict(raw_replies={"RETR": b"+OK\r\n" + garbage(5000, 3)}))]

    def make(case):
        label, kw = case
        raws = [msg(t, 1), msg(t, 2)]
        with Hostile(t, raws, name=f"garb{label.lower()}", stall_seconds=30, **kw) as h:
            r = h.run(extra=TIMEOUT_CONF)
            h.check_failed_cleanly(r, f"garbage for {label}",
                                   r"unexpected|malformed|greet|reply|line|time|no answer|clos|lost"
                                   r"|larger")
    variants(t, cases, make, "garbage")


# ------------------------------------------------------------------ greetings
def test_greeting_without_ok(t):
    """Greetings that are not +OK: empty, "OK ready", an IMAP greeting,
    "-ERR busy", a lone CR (then silence), a NUL before "+OK": exit 75
    quickly, no credentials sent.  ("+OKAY ready" is taken as +OK by
    libcurl and popbridge alike; see test_greeting_okay.)"""
    cases = [("empty", b"\r\n"), ("okplain", b"OK ready\r\n"), ("imap", b"* OK IMAP4rev1\r\n"),
             ("err", b"-ERR busy\r\n"), ("cr", b"\r"), ("nul", b"\0+OK\r\n")]

    def make(case):
        label, g = case
        raws = [msg(t, 1)]
        with Hostile(t, raws, name=f"greet{label}", greeting_raw=g, stall_seconds=30) as h:
            r = h.run(extra=TIMEOUT_CONF)
            h.check_failed_cleanly(r, f"greeting {g!r}", r"greet|POP3|server|time|repl|respon",
                                   seconds=12)
            sent = h.srv.command_lines()
            assert not any(c.startswith(("PASS", "AUTH")) for c in sent), \
                f"greeting {g!r}: credentials were sent ({sent})"
    variants(t, cases, make, "greeting")


def test_greeting_okay(t):
    """"+OKAY ready" is not "+OK" followed by a space (RFC 1939): refusing
    it is right, accepting it is harmless as long as the session then works;
    either way nothing may be lost."""
    raws = [msg(t, 1), msg(t, 2)]
    with Hostile(t, raws, name="greetokay", greeting_raw=b"+OKAY ready\r\n") as h:
        r = h.run(extra=TIMEOUT_CONF)
        if r.rc == EX_OK:
            t.note("greeting '+OKAY ready' accepted as +OK (the mail was imported)")
            fl.check_exactly_once(t, raws, h.imported(), h.srv.remaining(),
                                  received=received_fake, what="greeting +OKAY accepted")
            h.check_healthy("greeting +OKAY")
        else:
            h.check_failed_cleanly(r, "greeting +OKAY", r"greet|POP3|server|repl")


# ------------------------------------------------------------------ huge message
def test_multi_gigabyte_message(t):
    """LIST announces 3 GB; the server sends 6 MB and then closes, or
    stalls: a clear error, bounded memory (the spool goes to a file), no
    partial import, nothing deleted."""
    def make(then):
        raws = [msg(t, 1), msg(t, 2)]
        with Hostile(t, raws, name=f"huge{then}", announce={2: 3_000_000_000},
                     retr_stream={2: stream_body(6 << 20, terminator=False, then=then)},
                     stall_seconds=60) as h:
            r = h.run(extra=TIMEOUT_CONF)
            h.check_failed_cleanly(r, f"3 GB announced, 6 MB sent, then {then}",
                                   r"clos|lost|time|no answer")
            t.note(f"3 GB announced, {then}: peak memory {r.maxrss_kb // 1024} MB, "
                   f"{r.seconds:.1f} s")
            leftovers = [p.name for p in t.state_dir.iterdir() if p.name.startswith(".spool")]
            assert not leftovers, f"spool files left in state_dir: {leftovers}"
    variants(t, ["close", "stall"], make, "huge message")


def test_big_message_bounded_memory(t):
    """A real 40 MB message (LIST exact) is imported with bounded memory."""
    big = msg(t, 2, body=("y" * 76 + "\n") * (40 * 1024 * 1024 // 77))
    raws = [msg(t, 1), big]
    with Hostile(t, raws, sndbuf=0) as h:
        r = h.run(timeout=300)
        fl.assert_rc(r, EX_OK, "40 MB message")
        t.note(f"40 MB message: peak memory {r.maxrss_kb // 1024} MB, {r.seconds:.1f} s")
        assert r.maxrss_kb < MAX_RSS_KB, f"peak memory {r.maxrss_kb // 1024} MB for a 40 MB message"
        fl.check_exactly_once(t, raws, fl.imap_bodies(h.dc, h.dst), h.srv.remaining(),
                              received=received_fake)
        h.check_healthy("40 MB message")


# ------------------------------------------------------------------ unsolicited
def test_replies_to_commands_not_sent(t):
    """Extra "+OK" lines nobody asked for: after the greeting, after the
    STAT reply, before a RETR reply, after a DELE reply.  popbridge must
    not take one reply for another: either a clear error with nothing
    deleted, or every message imported unchanged -- never an extra line
    stored as part of a message, never a DELE for the wrong message."""
    extra = b"+OK unsolicited\r\n"
    cases = [("greeting", dict(greeting_raw=b"+OK ready\r\n" + extra)),
             ("stat", dict(extra_after={"STAT": extra})),
             ("retr", dict(extra_before={"RETR": extra}, extra_times=1)),
             ("retrafter", dict(extra_after={"RETR": extra}, extra_times=1)),
             ("dele", dict(extra_after={"DELE": extra}, extra_times=1))]

    def make(case):
        label, kw = case
        raws = [msg(t, 1), msg(t, 2), msg(t, 3)]
        with Hostile(t, raws, name=f"unsol{label}", stall_seconds=30, **kw) as h:
            r = h.run(extra=TIMEOUT_CONF)
            got = h.imported()
            if r.rc == EX_OK:
                # Accepted: then everything must be exactly right.
                fl.check_exactly_once(t, raws, got, h.srv.remaining(),
                                      what=f"unsolicited +OK ({label}), exit 0",
                                      received=received_fake)
                h.check_healthy(label)
                t.note(f"unsolicited +OK {label}: exit 0, all imported unchanged")
            else:
                h.check_failed_cleanly(r, f"unsolicited +OK ({label})",
                                       r"unexpected|malformed|repl|line|listing|LIST|UIDL|STAT"
                                       r"|time|clos")
                t.note(f"unsolicited +OK {label}: exit {r.rc}")
    variants(t, cases, make, "unsolicited reply")


# ------------------------------------------------------------------ odd messages
def test_odd_messages_imported_exactly(t):
    """Bare CR, bare LF (sent as is, not as CRLF), mixed line ends, raw
    UTF-8 in Subject and From, lines of 999, 5000 and 100000 characters,
    NUL bytes in header and body, a body of only dots, an empty body:
    all imported, bytes equal after the documented normalisation, read
    back with FETCH BINARY.PEEK[]; keep = false then deletes them."""
    raws = [
        msg(t, 1, body=b"bare CR\rin the middle\rof lines\r\nend\r\n"),
        msg(t, 2, body=b"bare LF line one\nline two\n.dot line\n..two dots\nend\n"),
        msg(t, 3, body=b"mixed\r\nline\nends\rhere\r\n\n\r\rlast"),
        msg(t, 4, subject="[h] Grüße aus Köln — 日本語 🙂",
            extra="From: Jürgen Müller <j@example.de>\n", body="8-bit header\n"),
        msg(t, 5, body=("a" * 999 + "\n" + "b" * 5000 + "\n" + "c" * 100000 + "\n")),
        msg(t, 6, body=b"NUL\x00in body\x00\x00 and \x00\n\x00 at line start\n",
            extra="X-Nul: a\x00b\n"),
        msg(t, 7, body=b".\n..\n...\n.\r\n.\r"),
        msg(t, 8, body=b""),
        msg(t, 9, body=b"ends with a bare CR\r"),
        msg(t, 10, body=b"\xff\xfe high bytes \x80\x81 not UTF-8\n"),
    ]
    sent = []

    def capture(cmd, sess):
        if cmd.verb == "APPEND":
            sent.append(cmd)
        return None
    with Hostile(t, raws, raw_wire=True) as h:
        px = FaultProxy(h.dc.imap_port, name="imap", commands=capture).start()
        try:
            accts = h.accounts()
            accts[0]["imap"] = fl.imap_block(h.dc, h.dst, px.port)
            r = fl.run_measured(t, "-c", t.config(accts, name="odd.conf"), "-v", "run")
        finally:
            px.stop()
        fl.assert_rc(r, EX_OK, "odd messages")
        want = {fl.seq_of(raw): raw for raw in raws}
        problems = []
        # 1. What popbridge sent: exactly the normalised bytes; NULs as literal8.
        literals = [(lit, cmd.data) for cmd in sent for lit in cmd.literals]
        seen = set()
        for lit, data in literals:
            s_ = fl.seq_of(lit)
            if s_ not in want:
                problems.append(f"an APPEND literal that is no test message: {lit[:60]!r}")
                continue
            seen.add(s_)
            exp = fl.expected(received_raw(want[s_]))
            if lit != exp:
                problems.append(f"message {s_[1]} as APPENDed: {fl.first_difference(exp, lit)}")
            if b"\0" in lit and b"~{%d" % len(lit) not in data:
                problems.append(f"message {s_[1]} has NULs but was not sent as literal8")
        if seen != set(want):
            problems.append(f"never APPENDed: {sorted(n for _, n in set(want) - seen)}")
        # 2. What Dovecot gives back (BINARY.PEEK[]): the same, except that
        #    Dovecot 2.3.19's maildir drops a bare CR just before a CRLF
        #    (it stores LF line ends), which is not popbridge's doing.
        got = h.imported()
        for body in got:
            s_ = fl.seq_of(body)
            if s_ not in want:
                continue
            exp = dovecot_stored(fl.expected(received_raw(want[s_])))
            if body != exp:
                problems.append(f"message {s_[1]} read back: {fl.first_difference(exp, body)}")
        assert not problems, "; ".join(problems)
        assert sorted(fl.seq_of(b) for b in got) == sorted(want), \
            f"IMAP holds {sorted(n for _, n in map(fl.seq_of, got))}"
        assert h.srv.remaining() == [], "keep = false, but messages are left on the server"
        h.check_healthy("odd messages")


def dovecot_stored(data):
    """What Dovecot 2.3.19 (maildir) returns for an APPENDed literal: a CR
    right before a CRLF is lost (the file keeps LF line ends)."""
    return re.sub(rb"\r(\r\n)", rb"\1", data)


def test_nul_bytes_without_binary(t):
    """Messages with NUL bytes where the IMAP server offers no BINARY (the
    proxy hides it): they stay on the POP3 server with the reason, the
    others are imported; nothing is stored with the NULs lost."""
    raws = [msg(t, 1), msg(t, 2, body=b"with a NUL \x00 byte\n"), msg(t, 3)]
    with Hostile(t, raws, raw_wire=True) as h:
        px = FaultProxy(h.dc.imap_port, name="imap", rules=[
            Rule("s2c", rb" BINARY(?=[ \]\r])", nth=0, action="replace", data=b"",
                 once=False)]).start()
        try:
            accts = h.accounts()
            accts[0]["imap"] = fl.imap_block(h.dc, h.dst, px.port)
            cfg = t.config(accts, name="nobinary.conf")
            r = fl.run_measured(t, "-c", cfg, "-v", "run")
        finally:
            px.stop()
        fl.assert_rc(r, EX_DATAERR, "NUL bytes without BINARY")
        fl.assert_error(r, h.name, r"NUL|BINARY", "NUL bytes without BINARY")
        got = h.imported()
        fl.check_no_loss(t, raws, got, h.srv.remaining(), what="NUL without BINARY",
                         received=received_raw)
        assert [fl.seq_of(b)[1] for b in got] == [1, 3], \
            f"IMAP holds {[fl.seq_of(b) for b in got]}, expected messages 1 and 3"
        assert h.srv.remaining() == [raws[1]], "the NUL message was deleted or others kept"
        h.check_healthy("NUL without BINARY")
