"""popbridge against a scripted fake POP3 server (tests/fakepop3.py), importing
into the private Dovecot's IMAP: servers without UIDL, messages cut off or
refused, listings that lie, dot-stuffing, bad greetings, stalls."""

import re

from fakepop3 import FakePOP3, dot_stuff, wire_form
from harness import (assert_bytes_equal, assert_exactly_once, describe,
                     make_account, normalise)

EX_DATAERR = 65
EX_TEMPFAIL = 75


# ------------------------------------------------------------------ helpers
def message(t, n, body=None, subject=None, date_day=None):
    """A small message numbered n, unique to this test."""
    day = date_day or (1 + n % 28)
    subject = subject or f"[{t.name}] fake message {n}"
    body = body if body is not None else f"Body of fake message {n}.\nSecond line.\n"
    return (f"Date: Mon, {day} Jan 2024 10:{n % 60:02d}:00 +0000\n"
            f"From: sender{n}@example.org\n"
            f"To: dest@example.net\n"
            f"Subject: {subject}\n"
            f"Message-ID: <fake{n}.{t.short}@example.org>\n"
            f"\n" + body).encode()


def fake_account(name, srv, dc, dst, keep=True):
    return make_account(name, srv.pop3_block(), dc.imap_block(dst), keep=keep)


def run(t, cfg, *extra, timeout=120):
    return t.bridge("-c", cfg, "-v", "run", *extra, timeout=timeout)


def summary_line(stderr, account):
    """(new, imported, failed, deleted) from `ACCOUNT: N new, N imported, ...`."""
    m = re.search(rf"\b{re.escape(account)}: (\d+) new, (\d+) imported, (\d+) failed, "
                  rf"(\d+) deleted\b", stderr)
    assert m, f"no summary line for {account} on stderr"
    return tuple(int(x) for x in m.groups())


def error_lines(stderr, account):
    """stderr lines about `account` other than the plaintext warning and the
    summary line."""
    out = []
    for line in stderr.splitlines():
        if f"{account}:" not in line:
            continue
        if "without TLS" in line or re.search(r"\d+ new, \d+ imported", line):
            continue
        out.append(line)
    return out


def assert_error_names(r, account, pattern, what):
    lines = error_lines(r.stderr, account)
    assert lines, f"{what}: no error line on stderr naming the account {account!r}"
    assert any(re.search(pattern, line, re.I) for line in lines), \
        f"{what}: the error does not say what happened (/{pattern}/): {lines}"


def assert_rc(r, want, what):
    assert r.rc == want, f"{what}: popbridge run exited {r.rc}, expected {want}"


def bodies(msgs):
    return [m["body"] for m in msgs]


def assert_not_in_imap(raw, msgs, what):
    """Neither raw nor any cut-off or changed copy of it (found by its
    Subject) is in msgs."""
    subj = re.search(rb"^Subject: (.*)$", raw, re.M).group(1).strip()
    hits = [m for m in msgs if subj in m["body"]]
    assert not hits, (f"{what}: {describe(raw)} is in IMAP ({len(hits[0]['body'])} bytes "
                      f"of {len(normalise(raw))})")


def assert_only_originals(raws, msgs, what):
    """Every IMAP message is one of raws, unchanged, at most as often as
    it is in raws."""
    want = {}
    for raw in raws:
        want[normalise(raw)] = want.get(normalise(raw), 0) + 1
    got = {}
    for m in msgs:
        got[m["body"]] = got.get(m["body"], 0) + 1
    for body, n in got.items():
        assert body in want, f"{what}: IMAP holds a message that is not one of the " \
                             f"originals ({describe(body)}, {len(body)} bytes)"
        assert n <= want[body], f"{what}: {describe(body)} is in IMAP {n} times"


# ------------------------------------------------------------------ 0. the fake itself
def test_fake_server_itself(t):
    """The fake server with Python's poplib (no popbridge): DELE counts only
    after QUIT, RSET unmarks, dot-stuffing round-trips, TOP n 0 is the
    header, faults fire, the password is never recorded."""
    import poplib
    raws = [b"Subject: a\n\n.dot\n.\nend\n", b"Subject: b\r\n\r\nbody\r\n", b"Subject: c\n\nx"]

    def login(srv):
        c = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        c.user(srv.user)
        c.pass_(srv.password)
        return c

    with FakePOP3(raws) as srv:
        c = login(srv)
        assert c.stat() == (3, sum(len(wire_form(r)) for r in raws))
        assert b"\r\n".join(c.retr(1)[1]) + b"\r\n" == wire_form(raws[0])
        assert c.top(2, 0)[1] == [b"Subject: b", b""]
        assert len(c.uidl()[1]) == 3
        c.dele(1)
        c.dele(2)
        c.rset()
        c.dele(3)
        c.close()                                  # no QUIT: nothing deleted
        assert srv.wait_idle()
        assert srv.remaining() == raws and srv.deleted() == []
        c = login(srv)
        c.dele(3)
        c.quit()
        assert srv.remaining() == raws[:2] and srv.deleted() == [raws[2]]
        assert srv.password not in srv.transcript()
        assert "PASS <hidden>" in srv.command_lines()

    with FakePOP3(raws, uidl=False, retr_fault={1: "cut", 2: "err"}) as srv:
        c = login(srv)
        assert "UIDL" not in c.capa()
        for num in (2, 1):
            try:
                c.retr(num)
            except poplib.error_proto:
                pass
            else:
                raise AssertionError(f"fake server: RETR {num} should have failed")
        c.close()
        assert srv.wait_idle()
        assert srv.remaining() == raws


# ------------------------------------------------------------------ 1. no UIDL
def test_no_uidl_header_hashes_stand_in(t):
    """A server without UIDL: four messages (two byte-identical, two with the
    same header and different bodies) are imported once each, by header
    hashes; `check` says so; keep = false empties the maildrop."""
    dc = t.dovecot()
    dst = t.user(dc, "d")
    a = message(t, 1)
    b = message(t, 2)
    b_other_body = message(t, 2, body="The same header as message 2, another body.\n")
    raws = [a, a, b, b_other_body]
    with FakePOP3(raws, uidl=False) as srv:
        cfg = t.config([fake_account("nouidl", srv, dc, dst, keep=True)])

        r = t.bridge("-c", cfg, "check", timeout=60)
        assert r.rc == 0, f"check exited {r.rc}"
        assert "no (header hashes stand in)" in r.stdout, \
            "check does not say that header hashes stand in for UIDL"
        assert srv.remaining() == raws and dc.imap_count(dst) == 0, "check changed something"
        # check names the messages as a run would (it counts what is to
        # import): its TOPs are not the run's.
        checked = len(srv.command_lines())

        r1 = run(t, cfg)
        assert_rc(r1, 0, "first run")
        msgs = dc.imap_messages(dst)
        assert_exactly_once(raws, msgs)
        for raw, m in zip(raws, msgs):
            assert_bytes_equal(raw, m["body"])
        assert summary_line(r1.stderr, "nouidl") == (4, 4, 0, 0), \
            f"first run: summary {summary_line(r1.stderr, 'nouidl')}, expected 4 new, 4 imported"
        tops = [c for c in srv.command_lines()[checked:] if c.upper().startswith("TOP ")]
        assert sorted(tops) == [f"TOP {n} 0" for n in range(1, 5)], \
            f"expected TOP n 0 for each message (header hashes), got {tops}"
        # The login went through and its secret was never recorded.
        assert "AUTH" in srv.command_names() and srv.logins >= 1

        r2 = run(t, cfg)
        assert_rc(r2, 0, "second run")
        assert summary_line(r2.stderr, "nouidl")[:2] == (0, 0), \
            "second run: a server without UIDL, unchanged, yet messages counted as new"
        assert dc.imap_count(dst) == 4, "second run imported again"
        assert srv.remaining() == raws, "keep = true but messages were deleted"

        # The same mailbox with keep = false: nothing new, all four deleted.
        cfg2 = t.config([fake_account("nouidl", srv, dc, dst, keep=False)], name="kf.conf")
        r3 = run(t, cfg2)
        assert_rc(r3, 0, "keep = false run")
        assert srv.wait_idle(), "the fake server's session did not end"
        assert srv.remaining() == [], \
            f"keep = false: {len(srv.remaining())} messages left on the server"
        assert sorted(srv.deleted()) == sorted(raws)
        assert srv.quits >= 1
        assert_exactly_once(raws, dc.imap_messages(dst))
        assert summary_line(r3.stderr, "nouidl")[1:] == (0, 0, 4), \
            f"keep = false run: summary {summary_line(r3.stderr, 'nouidl')}"


def test_no_uidl_keep_false_first_run(t):
    """No UIDL, keep = false from the start, USER/PASS login (no SASL): all
    imported once, maildrop empty, a second run finds nothing."""
    dc = t.dovecot()
    dst = t.user(dc, "d")
    a = message(t, 1)
    raws = [a, message(t, 2), a, message(t, 3)]
    with FakePOP3(raws, uidl=False, sasl=False) as srv:
        cfg = t.config([fake_account("nouidlkf", srv, dc, dst, keep=False)])
        r = run(t, cfg)
        assert_rc(r, 0, "run")
        assert "PASS" in srv.command_names(), "USER/PASS was not used on a server without SASL"
        assert srv.remaining() == [], f"{len(srv.remaining())} messages left on the server"
        assert_exactly_once(raws, dc.imap_messages(dst))
        r2 = run(t, cfg)
        assert_rc(r2, 0, "second run")
        assert dc.imap_count(dst) == 4


def test_no_uidl_same_header_refused_then_alone(t):
    """No UIDL, keep = false: messages 1 and 2 have the same header but
    different bodies.  RETR 2 is refused, message 1 is imported and deleted.
    Next run message 2 is alone on the server; it must be imported, not
    taken for message 1 and deleted."""
    dc = t.dovecot()
    dst = t.user(dc, "d")
    first = message(t, 1, body="First body.\n")
    second = message(t, 1, body="Second body, same header, longer than the first.\n")
    with FakePOP3([first, second], uidl=False, retr_fault={2: "err"}) as srv:
        cfg = t.config([fake_account("samehdr", srv, dc, dst, keep=False)])
        r1 = run(t, cfg)
        assert_rc(r1, EX_DATAERR, "run with RETR 2 refused")
        assert srv.remaining() == [second], "after run 1 only message 2 should be on the server"
        assert_exactly_once([first], dc.imap_messages(dst))

        srv.retr_fault = {}
        r2 = run(t, cfg)
        assert_rc(r2, 0, "second run")
        msgs = dc.imap_messages(dst)
        lost = not srv.remaining() and normalise(second) not in bodies(msgs)
        assert not lost, ("message 2 (same header as the imported message 1, other body) "
                          "was deleted from the server without being imported: LOST")
        assert_exactly_once([first, second], msgs)
        assert srv.remaining() == []


# ------------------------------------------------------------------ 2. RETR cut
def test_retr_cut_mid_message(t):
    """The connection closes half-way through RETR 2: exit 75, no cut-off
    copy, nothing deleted; a later run against a healthy server imports the
    rest exactly once."""
    dc = t.dovecot()
    dst = t.user(dc, "d")
    big_body = "".join(f"line {i:05d} of a longer message, " + "y" * 60 + "\n" for i in range(400))
    raws = [message(t, 1), message(t, 2, body=big_body), message(t, 3)]
    with FakePOP3(raws, retr_fault={2: "cut"}) as srv:
        cfg = t.config([fake_account("cut", srv, dc, dst, keep=False)])
        r1 = run(t, cfg)
        assert_rc(r1, EX_TEMPFAIL, "RETR cut off")
        assert_error_names(r1, "cut", r"clos|lost|receiv|connection", "RETR cut off")
        assert "RETR 2" in srv.command_lines(), "RETR 2 was never sent"
        msgs = dc.imap_messages(dst)
        assert_not_in_imap(raws[1], msgs, "after the cut")
        assert_only_originals(raws, msgs, "after the cut")
        assert srv.wait_idle()
        assert srv.remaining() == raws and srv.deleted() == [], \
            "messages were deleted on the server although no QUIT was possible"
        assert srv.quits == 0

        srv.retr_fault = {}
        r2 = run(t, cfg)
        assert_rc(r2, 0, "run against the healthy server")
        msgs = dc.imap_messages(dst)
        assert_exactly_once(raws, msgs)
        for raw in raws:
            assert_bytes_equal(raw, next(m["body"] for m in msgs
                                         if m["body"] == normalise(raw)))
        assert srv.remaining() == [], "keep = false but messages are left on the server"


# ------------------------------------------------------------------ 3. RETR -ERR
def test_retr_err_one_message(t):
    """RETR 2 answers -ERR: message 2 is reported and kept, the others are
    imported and (keep = false) deleted; exit 65; next run gets message 2."""
    dc = t.dovecot()
    dst = t.user(dc, "d")
    raws = [message(t, 1), message(t, 2), message(t, 3)]
    with FakePOP3(raws, retr_fault={2: "err"}) as srv:
        cfg = t.config([fake_account("retrerr", srv, dc, dst, keep=False)])
        r = run(t, cfg)
        assert_rc(r, EX_DATAERR, "RETR 2 refused")
        lines = error_lines(r.stderr, "retrerr")
        assert any(re.search(r"message 2\b|RETR 2\b", line) for line in lines), \
            f"stderr does not report message 2 for the account: {lines}"
        assert_exactly_once([raws[0], raws[2]], dc.imap_messages(dst))
        assert srv.wait_idle()
        assert srv.remaining() == [raws[1]], \
            f"the server holds {[describe(x) for x in srv.remaining()]}, expected message 2 only"
        assert sorted(srv.deleted()) == sorted([raws[0], raws[2]])
        assert summary_line(r.stderr, "retrerr") == (3, 2, 1, 2), \
            f"summary {summary_line(r.stderr, 'retrerr')}, expected 3 new, 2 imported, 1 failed, 2 deleted"

        srv.retr_fault = {}
        r2 = run(t, cfg)
        assert_rc(r2, 0, "second run")
        assert_exactly_once(raws, dc.imap_messages(dst))
        assert srv.remaining() == []


def test_uidl_refused_for_now(t):
    """A server that has UIDL refuses it for a moment: CAPA lists UIDL and
    UIDL answers -ERR; then a server without UIDL in CAPA answers -ERR
    [SYS/TEMP].  Either way the run ends temporary (75) naming UIDL,
    nothing imported or deleted, no header hashes taken (no TOP): they
    would name the messages differently and import them twice once UIDL
    works.  When it answers, everything is imported once."""
    dc = t.dovecot()
    dst = t.user(dc, "d")
    raws = [message(t, 1), message(t, 2), message(t, 3)]
    with FakePOP3(raws, faults={"UIDL": "err"}) as srv:
        cfg = t.config([fake_account("uidltemp", srv, dc, dst, keep=False)])
        r = run(t, cfg)
        assert_rc(r, EX_TEMPFAIL, "UIDL refused by a server that lists it")
        assert_error_names(r, "uidltemp", r"UIDL refused", "UIDL refused")
        assert not [c for c in srv.command_lines() if c.upper().startswith("TOP ")], \
            "header hashes were taken although the server lists UIDL"
        assert dc.imap_count(dst) == 0 and srv.remaining() == raws

        srv.faults = {}
        r2 = run(t, cfg)
        assert_rc(r2, 0, "UIDL answers again")
        assert_exactly_once(raws, dc.imap_messages(dst))
        assert srv.wait_idle() and srv.remaining() == []

    dst2 = t.user(dc, "d")
    with FakePOP3(raws, uidl=False, faults={"UIDL": "temp"}) as srv:
        cfg = t.config([fake_account("uidlsys", srv, dc, dst2, keep=True)], name="sys.conf")
        r = run(t, cfg)
        assert_rc(r, EX_TEMPFAIL, "UIDL refused with [SYS/TEMP]")
        assert_error_names(r, "uidlsys", r"SYS/TEMP", "UIDL refused with [SYS/TEMP]")
        assert dc.imap_count(dst2) == 0, "imported by header hashes after [SYS/TEMP]"

        srv.faults = {}
        r2 = run(t, cfg)
        assert_rc(r2, 0, "a server without UIDL, no longer refusing")
        assert_exactly_once(raws, dc.imap_messages(dst2))


# ------------------------------------------------------------------ 4. lying listings
def test_listing_that_lies(t):
    """UIDL (or LIST) listings that do not account for every message exactly
    once: exit 75, an error naming the account, nothing imported, nothing
    deleted."""
    dc = t.dovecot()
    variants = [
        ("uidlextra", "UIDL", dict(uidl_lines=["1 u-one", "2 u-two", "3 u-three", "4 u-four"])),
        ("uidldupnum", "UIDL", dict(uidl_lines=["1 u-one", "1 u-two", "3 u-three"])),
        ("uidlfewer", "UIDL", dict(uidl_lines=["1 u-one", "2 u-two"])),
        ("listfewer", "LIST", dict(list_lines=["1 200", "3 200"])),
    ]
    problems = []
    for name, cmd, kw in variants:
        dst = t.user(dc, "d")
        raws = [message(t, 1), message(t, 2), message(t, 3)]
        with FakePOP3(raws, **kw) as srv:
            cfg = t.config([fake_account(name, srv, dc, dst, keep=False)], name=f"{name}.conf")
            r = run(t, cfg)
            try:
                assert_rc(r, EX_TEMPFAIL, name)
                assert_error_names(r, name, rf"{cmd}|listing|missing|twice|not exist|same",
                                   name)
                assert dc.imap_count(dst) == 0, f"{name}: messages were imported"
                assert srv.wait_idle()
                assert srv.remaining() == raws, f"{name}: messages were deleted"
                assert "DELE" not in srv.command_names(), f"{name}: DELE was sent"
                assert "RETR" not in srv.command_names(), f"{name}: RETR was sent"
            except AssertionError as e:
                problems.append(str(e))
    assert not problems, "; ".join(problems)


def test_listing_with_a_repeated_uidl(t):
    """Two messages under one UIDL: RFC 1939 forbids it, popa3d does it
    (its UIDL hashes a few headers).  Not a lie: the messages are told
    apart by content, each imported once and then deleted (keep = false);
    a rerun imports nothing."""
    dc = t.dovecot()
    dst = t.user(dc, "d")
    raws = [message(t, 1), message(t, 2), message(t, 3)]
    with FakePOP3(raws, uidls=["u-one", "u-one", "u-three"]) as srv:
        cfg = t.config([fake_account("dupid", srv, dc, dst, keep=True)])
        r = run(t, cfg)
        assert_rc(r, 0, "repeated UIDL")
        assert_exactly_once(raws, dc.imap_messages(dst))
        r = run(t, cfg)
        assert_rc(r, 0, "repeated UIDL, rerun")
        assert summary_line(r.stderr, "dupid")[1] == 0, "the rerun imported again"
        cfg = t.config([fake_account("dupid", srv, dc, dst, keep=False)], name="kf.conf")
        r = run(t, cfg)
        assert_rc(r, 0, "repeated UIDL, keep = false")
        assert srv.wait_idle() and srv.remaining() == [], "keep = false: messages left"
        assert_exactly_once(raws, dc.imap_messages(dst))


# ------------------------------------------------------------------ 5. dot-stuffing
def test_dot_stuffed_lines(t):
    """Body lines starting with "." (stuffed by the server), a line of just
    "." inside a body and at its end: the bytes in IMAP are the original's."""
    dc = t.dovecot()
    dst = t.user(dc, "d")
    raws = [
        message(t, 1, body=".hidden file line\n..two dots\n...three dots\n. space after dot\n"
                           "end\n"),
        message(t, 2, body="before\n.\nafter the lone dot\n.\r\n..\n"),
        message(t, 3, body=".\nthe first body line was a lone dot\n."),   # no final newline
        message(t, 4, body="".join(f".{i} " + "d" * (i % 97) + "\n" + (".\n" if i % 7 == 0 else "")
                                   for i in range(6000))),                 # ~350 KB of dots
        message(t, 5, body="CRLF body\r\n.\r\n.dot\r\nlast\r\n"),
    ]
    # The fake server really stuffs what it sends.
    assert b"\r\n..\r\n" in dot_stuff(wire_form(raws[1]))
    with FakePOP3(raws, sasl=False) as srv:
        cfg = t.config([fake_account("dots", srv, dc, dst, keep=False)])
        r = run(t, cfg)
        assert_rc(r, 0, "run")
        msgs = dc.imap_messages(dst)
        assert len(msgs) == len(raws), f"{len(msgs)} messages in IMAP, expected {len(raws)}"
        for raw, m in zip(raws, msgs):
            assert_bytes_equal(raw, m["body"])
        assert srv.remaining() == []


# ------------------------------------------------------------------ 6. greetings
def _greeting_case(t, name, what, **kw):
    dc = t.dovecot()
    dst = t.user(dc, "d")
    raws = [message(t, 1)]
    with FakePOP3(raws, **kw) as srv:
        cfg = t.config([fake_account(name, srv, dc, dst, keep=False)], name=f"{name}.conf")
        # Default timeout (120 s): the run must end on its own, long before.
        r = run(t, cfg, timeout=200)
        assert_rc(r, EX_TEMPFAIL, what)
        assert r.seconds < 15, f"{what}: the run took {r.seconds:.0f} s (it waited for more " \
                               f"instead of failing at once)"
        assert_error_names(r, name, r"pop3|greet|server|repl|respon|clos", what)
        assert not any(c.startswith(("PASS", "AUTH")) for c in srv.command_lines()), \
            f"{what}: credentials were sent to a server that did not greet with +OK"
        assert srv.remaining() == raws and dc.imap_count(dst) == 0


def test_greeting_err(t):
    _greeting_case(t, "greeterr", "greeting -ERR", greeting="-ERR go away")


def test_server_closes_at_once(t):
    _greeting_case(t, "closes", "server closing at once", greeting=None, after_greeting="close")


def test_greeting_garbage_then_close(t):
    _greeting_case(t, "garbclose", "greeting '* hello', then close",
                   greeting="* hello", after_greeting="close")


def test_greeting_garbage_held_open(t):
    """'* hello' instead of +OK, and the server waits for a command: the run
    must fail at once, not wait for the configured timeout."""
    _greeting_case(t, "garbopen", "greeting '* hello', connection kept open",
                   greeting="* hello", stall_seconds=150)


# ------------------------------------------------------------------ 7. stalls
def _stall_case(t, name, what, keep=True, **kw):
    dc = t.dovecot()
    dst = t.user(dc, "d")
    raws = [message(t, 1), message(t, 2, body="z" * 50000 + "\n")]
    with FakePOP3(raws, stall_seconds=60, **kw) as srv:
        cfg = t.config([fake_account(name, srv, dc, dst, keep=keep)], name=f"{name}.conf",
                       extra="timeout = 5;\n")
        r = run(t, cfg, timeout=90)
        assert_rc(r, EX_TEMPFAIL, what)
        assert r.seconds < 16, f"{what}: the run took {r.seconds:.0f} s with timeout = 5"
        assert_error_names(r, name, r"time|no answer for 5", what)
        return srv, raws, dc, dst


def test_stall_after_greeting(t):
    srv, raws, dc, dst = _stall_case(t, "stallgreet", "stall after the greeting",
                                     after_greeting="stall")
    assert dc.imap_count(dst) == 0


def test_stall_after_login(t):
    srv, raws, dc, dst = _stall_case(t, "stallstat", "no answer to STAT",
                                     faults={"STAT": "stall"})
    assert dc.imap_count(dst) == 0


def test_stall_mid_retr(t):
    srv, raws, dc, dst = _stall_case(t, "stallretr", "stall half-way through RETR 2",
                                     keep=False, retr_fault={2: "cutstall"})
    msgs = dc.imap_messages(dst)
    assert_not_in_imap(raws[1], msgs, "after the stall")
    assert_only_originals(raws, msgs, "after the stall")
    assert raws[1] in srv.remaining(), "message 2 was deleted on the server after a stall"
    for raw in srv.deleted():
        assert normalise(raw) in bodies(msgs), f"{describe(raw)} was deleted but is not in IMAP"


def test_trickling_server_meets_the_deadline(t):
    """A server that sends one byte a second (under `timeout`, so no wait
    ever times out) cannot hold a run for ever: the account's deadline
    (here 12 s: the base of the config plus the mail at a slow line's
    rate, a few bytes here) ends it with a line that says so, exit 75, and
    the next account of the run is reached.  Before the fix: the run went
    on for as long as the server trickled (minutes)."""
    dc = t.dovecot()
    dst = t.user(dc, "d")
    src2, dst2 = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src2, message(t, 9))
    raws = [message(t, 1), message(t, 2, body="x" * 4000 + "\n")]
    with FakePOP3(raws, retr_fault={2: "trickle"}, trickle_seconds=1.0) as srv:
        cfg = t.config([fake_account("slow", srv, dc, dst),
                        make_account("next", dc.pop3_block(src2), dc.imap_block(dst2))],
                       extra="deadline = 12;\ntimeout = 5;\n")
        r = run(t, cfg, timeout=120)
        assert_rc(r, EX_TEMPFAIL, "trickling server")
        assert re.search(r"slow: .*deadline passed", r.stderr), r.stderr[-500:]
        # The trickle (4,000 bytes, one a second) was cut short: the
        # message is not in IMAP, the one before it is.
        got = [m["body"] for m in dc.imap_messages(dst)]
        assert normalise(raws[0]) in got and normalise(raws[1]) not in got, \
            f"{len(got)} messages in IMAP"
        assert dc.imap_count(dst2) == 1, "the next account was not reached"
        assert summary_line(r.stderr, "next")[1] == 1
