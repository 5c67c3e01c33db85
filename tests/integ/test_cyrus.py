"""popbridge against a second server family: Cyrus IMAP 3.6 (Debian 12's
cyrus-imapd and cyrus-pop3d, unpacked by scripts/cyrus-fetch.sh and run
privately by tests/cyrus.py), as the POP3 source, as the IMAP target, and
mixed with the private Dovecot (Cyrus POP3 -> Dovecot IMAP and back).

If Cyrus cannot run on this machine every test here fails, saying what is
missing: these tests never pass without a Cyrus having answered.  The
quirks these tests rely on are listed at the top of tests/cyrus.py.
"""

import base64
import os
import poplib
import random
import re
import socket
import time

from cyrus import Cyrus, CyrusUnavailable
from fakepop3 import FakePOP3
from harness import (LOOPBACK, assert_bytes_equal, assert_exactly_once, describe,
                     expected_internaldate, make_account, normalise, small_message,
                     varied_messages)

EX_DATAERR = 65
EX_TEMPFAIL = 75
EX_NOPERM = 77

def cyrus(t, **opts) -> Cyrus:
    """The file's shared Cyrus instance with these options; fails the test,
    with the reason, where Cyrus cannot run."""
    return t.server(("cyrus", repr(sorted(opts.items()))), lambda: Cyrus(**opts).start(),
                    title="Cyrus IMAP", unavailable=CyrusUnavailable)


def summary_line(stderr, account):
    m = re.search(rf"^.*\b{re.escape(account)}: (\d+) new, (\d+) imported, (\d+) failed, "
                  rf"(\d+) deleted\b.*$", stderr, re.M)
    assert m, f"no summary line for {account} on stderr ('{account}: N new, N imported, ...')"
    return tuple(int(x) for x in m.groups())


def run_ok(t, cfg, *extra):
    r = t.bridge("-c", cfg, "-v", "run", *extra)
    assert r.rc == 0, f"popbridge run exited {r.rc}, expected 0"
    return r


class RawIMAP:
    """A bare IMAP connection on the plain port, for replies imaplib hides."""

    def __init__(self, cy, user):
        self.sock = socket.create_connection((LOOPBACK, cy.imap_port), timeout=30)
        self.f = self.sock.makefile("rwb")
        self.greeting = self.f.readline()
        self.login_reply = self.cmd(b"a0", f"LOGIN {user} {cy.users[user]}".encode())[-1]

    def cmd(self, tag, line, literal=None):
        """Send `tag line` (with a LITERAL+ literal if given); return the lines
        up to the tagged reply, or to EOF."""
        data = tag + b" " + line
        if literal is not None:
            data += (b"" if line.endswith(b"~") else b" ") + b"{%d+}\r\n" % len(literal) + literal
        self.f.write(data + b"\r\n")
        self.f.flush()
        out = []
        while True:
            ln = self.f.readline()
            out.append(ln)
            if not ln or ln.startswith(tag + b" "):
                return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def check_import(msgs, labelled, what):
    """Bytes, INTERNALDATE (the instant), no flags, POP3 order."""
    raws = [raw for _, raw in labelled]
    assert_exactly_once(raws, msgs, what)
    by_body = {m["body"]: m for m in msgs}
    for label, raw in labelled:
        m = by_body[normalise(raw)]
        assert_bytes_equal(raw, m["body"])
        want = expected_internaldate(raw)
        assert m["internaldate"] == want, \
            f"{what}: {label}: INTERNALDATE {m['internaldate_raw']} is not the message's date {want}"
        assert m["flags"] == set(), f"{what}: {label}: flags {sorted(m['flags'])}, expected none"
    assert [m["body"] for m in msgs] == [normalise(raw) for raw in raws], \
        f"{what}: messages were not appended in POP3 order"


# ------------------------------------------------------------------ the server itself
def test_cyrus_server_and_its_quirks(t):
    """The private Cyrus answers, with the quirks tests/cyrus.py lists."""
    cy = cyrus(t)
    t.note(f"Cyrus IMAP {cy.version}")
    u = t.user(cy, "q")
    labelled = varied_messages(t.name)
    cy.deliver_many(u, [raw for _, raw in labelled])

    # POP3: UIDL is "UIDVALIDITY.UID"; the served bytes are CRLF with a
    # final CRLF, the mbox From line kept (Cyrus stored what was appended).
    served = cy.pop3_messages(u)
    assert len(served) == len(labelled)
    for (uidl, body), (label, raw) in zip(served, labelled):
        assert re.fullmatch(r"\d+\.\d+", uidl), f"Cyrus UIDL {uidl!r} is not UIDVALIDITY.UID"
        crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not crlf.endswith(b"\r\n"):
            crlf += b"\r\n"
        assert body == crlf, f"{label}: Cyrus POP3 serves other bytes than were appended"
    uidvalidities = {uidl.split(".")[0] for uidl, _ in served}
    assert len(uidvalidities) == 1, f"UIDLs of one mailbox with several UIDVALIDITYs: {served}"

    # CAPA before login (USER is listed only then), then after it.
    c = poplib.POP3_SSL(cy.host, cy.pop3s_port, context=cy.ssl_context(), timeout=30)
    try:
        capa = c.capa()
        greeting = c.getwelcome().decode()
        c.user(u)
        c.pass_(cy.users[u])
        capa_after = c.capa()
    finally:
        c.quit()
    for k in ("UIDL", "TOP", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "USER", "EXPIRE",
              "LOGIN-DELAY", "IMPLEMENTATION", "SASL"):
        assert k in capa, f"Cyrus POP3 CAPA lacks {k}: {capa}"
    assert "USER" not in capa_after and "UIDL" in capa_after, \
        f"Cyrus POP3 CAPA after login: {capa_after}"
    assert "Cyrus POP3" in greeting, greeting

    c = cy.imap(u)
    try:
        caps = set(c.capabilities)
        typ, data = c.list()
        seps = {re.search(rb'\) "(.)" ', d).group(1) for d in data if d}
    finally:
        c.logout()
    for k in ("MULTIAPPEND", "LITERAL+", "UIDPLUS", "BINARY", "QUOTA", "IDLE", "MOVE"):
        assert k in caps, f"Cyrus IMAP does not offer {k} after login: {sorted(caps)}"
    assert any(k.startswith("APPENDLIMIT=") for k in caps), \
        f"Cyrus IMAP does not advertise APPENDLIMIT: {sorted(caps)}"
    assert seps == {b"/"}, f"hierarchy separator {seps}, expected '/' (unixhierarchysep)"

    # A second POP3 session while one is open: Cyrus says "Mailbox locked"
    # but locks nothing (popbridge relies on its own lock file, not on this).
    c1 = cy.pop3(u)
    try:
        try:
            c2 = cy.pop3(u, busy_wait=0)
            second = f"a second session logs in and sees {c2.stat()[0]} messages"
            c2.quit()
        except poplib.error_proto as e:
            second = f"a second session is refused: {e}"
    finally:
        c1.quit()
    t.note(f"POP3 while a session is open: {second}")

    # Replies imaplib would hide.
    raw = RawIMAP(cy, u)
    try:
        assert b"Cyrus IMAP" in raw.greeting and b"[CAPABILITY " in raw.greeting
        if b"LOGINDISABLED" in raw.login_reply:
            t.note("LOGIN's tagged OK [CAPABILITY ...] lists LOGINDISABLED after a good login")
        r = raw.cmd(b"a1", b"APPEND INBOX", b"Subject: nul\r\n\r\na\x00b\r\n")[-1]
        assert r.startswith(b"a1 NO") and b"NUL" in r, f"NUL in a plain literal: {r!r}"
        r = raw.cmd(b"a2", b"APPEND INBOX", b"Subject: lf\n\na\nb\n")[-1]
        assert r.startswith(b"a2 NO") and b"bare newlines" in r, f"bare LF: {r!r}"
        r = raw.cmd(b"a3", b"APPEND NoSuchBox", b"Subject: x\r\n\r\nx\r\n")[-1]
        assert r.startswith(b"a3 NO [TRYCREATE]"), f"APPEND to a missing mailbox: {r!r}"
        r = raw.cmd(b"a5", b"APPEND INBOX ~", b"Subject: nul8\r\n\r\na\x00b\r\n")[-1]
        assert r.startswith(b"a5 OK [APPENDUID "), f"NUL in a literal8: {r!r}"
    finally:
        raw.close()


# ------------------------------------------------------------------ Cyrus -> Cyrus
def test_cyrus_basic_import(t):
    cy = cyrus(t)
    src, dst = t.user(cy, "s"), t.user(cy, "d")
    labelled = varied_messages(t.name)
    raws = [raw for _, raw in labelled]
    cy.deliver_many(src, raws)
    cfg = t.config([cy.account("cy1", src, dst)])

    r1 = run_ok(t, cfg)
    check_import(cy.imap_messages(dst), labelled, "Cyrus INBOX")

    r2 = run_ok(t, cfg)
    assert cy.imap_count(dst) == len(raws), "second run changed INBOX"
    assert cy.pop3_count(src) == len(raws), "keep = true but POP3 messages were deleted"
    assert summary_line(r1.stderr, "cy1") == (len(raws), len(raws), 0, 0)
    assert summary_line(r2.stderr, "cy1")[:2] == (0, 0), "second run imported again"


def test_cyrus_keep_false_empties_pop3(t):
    cy = cyrus(t)
    src, dst = t.user(cy, "s"), t.user(cy, "d")
    labelled = varied_messages(t.name)
    raws = [raw for _, raw in labelled]
    cy.deliver_many(src, raws)
    cfg = t.config([cy.account("cykf", src, dst, keep=False, flags=["\\Seen", "\\Flagged"])])

    r = run_ok(t, cfg)
    msgs = cy.imap_messages(dst)
    assert_exactly_once(raws, msgs)
    for m in msgs:
        assert m["flags"] == {"\\Seen", "\\Flagged"}, \
            f"{describe(m['body'])}: flags {sorted(m['flags'])}, expected \\Seen \\Flagged"
    assert cy.pop3_count(src) == 0, "keep = false but messages are still on the Cyrus POP3 server"
    assert summary_line(r.stderr, "cykf") == (len(raws), len(raws), 0, len(raws))

    r2 = run_ok(t, cfg)
    assert summary_line(r2.stderr, "cykf")[:2] == (0, 0), "second run imported again"
    assert cy.imap_count(dst) == len(raws), "second run changed INBOX"


def test_cyrus_starttls(t):
    cy = cyrus(t)
    src, dst = t.user(cy, "s"), t.user(cy, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:3]]
    cy.deliver_many(src, raws)
    acct = cy.account("cyst", src, dst, mode="starttls")
    assert acct["pop3"]["url"].startswith("pop3://") and acct["imap"]["url"].startswith("imap://")
    cfg = t.config([acct])

    run_ok(t, cfg)
    assert_exactly_once(raws, cy.imap_messages(dst))
    # Cyrus logs "login: localhost [127.0.0.1] USER MECH+TLS User logged in".
    # Only the logins on the plain ports (after STARTTLS) count here.
    if not cy.has_log:
        t.note("no Cyrus log here (no private /dev/log): TLS of the logins not checked")
        return
    for user in (src, dst):
        lines = [ln for ln in cy.logins(user) if "/pop3[" in ln or "/imap[" in ln]
        assert lines, f"no login of {user} on Cyrus's plain ports in its log"
        for line in lines:
            assert "+TLS " in line, f"login of {user} was not over TLS: {line}"


def test_cyrus_wrong_passwords_exit_77(t):
    cy = cyrus(t)
    src, dst = t.user(cy, "s"), t.user(cy, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    cy.deliver_many(src, raws)
    for name, acct, bad in (
            ("cybadpop", make_account("cybadpop", cy.pop3_block(src, password="wrong-pop-4711"),
                                      cy.imap_block(dst), keep=False), "wrong-pop-4711"),
            ("cybadimap", make_account("cybadimap", cy.pop3_block(src),
                                       cy.imap_block(dst, password="wrong-imap-0815"),
                                       keep=False), "wrong-imap-0815")):
        cfg = t.config([acct], name=f"{name}.conf")
        r = t.bridge("-c", cfg, "-vv", "run")
        assert r.rc == EX_NOPERM, f"{name}: exit {r.rc}, expected {EX_NOPERM} (login refused)"
        assert any(name in line and "localhost" in line for line in r.stderr.splitlines()), \
            f"{name}: no line names the account and the server"
        for pw in (bad, cy.users[src], cy.users[dst]):
            for form in (pw, base64.b64encode(pw.encode()).decode()):
                assert form not in r.output, f"{name}: output shows a password"
        assert cy.pop3_count(src) == len(raws), f"{name}: POP3 messages were deleted"
        assert cy.imap_count(dst) == 0, f"{name}: something was imported"
    # Cyrus logged both refusals (badlogin), so they really reached it.
    if not cy.has_log:
        return
    assert [ln for ln in cy.log_text().splitlines() if "badlogin:" in ln and f"({src})" in ln], \
        "Cyrus did not log the refused POP3 login"
    assert [ln for ln in cy.log_text().splitlines() if "badlogin:" in ln and f"({dst})" in ln], \
        "Cyrus did not log the refused IMAP login"


TOTAL = 200
MIN_KILLS = 8
MIN_WORKING_KILLS = 1   # on a quiet machine Cyrus imports 200 messages in a blink
MAX_ROUNDS = 60


def test_cyrus_kill9_loop_exactly_once(t):
    """SIGKILL at random moments, Cyrus on both sides, keep = false: every
    message ends up in IMAP exactly once and POP3 ends empty.

    Mail arrives in batches between runs.  The wait before each kill adapts
    to the machine: longer after a kill that came before anything was
    imported, shorter after a run that finished first; the loop goes on
    until at least MIN_WORKING_KILLS kills landed while mail was moving."""
    seed = int(os.environ.get("POPBRIDGE_TEST_SEED", "20240917"))
    rng = random.Random(seed)
    t.note(f"random seed {seed} (set POPBRIDGE_TEST_SEED to replay another)")
    cy = cyrus(t)
    src, dst = t.user(cy, "s"), t.user(cy, "d")
    raws = [small_message(i, rng, t.name) for i in range(TOTAL)]
    cfg = t.config([cy.account("cykill", src, dst, keep=False)])

    pending = list(raws)
    wait = 0.6
    kills = finished = rounds = 0
    early = mid_import = after_import = 0
    delivered = 0
    bad_exits = []
    while (kills < MIN_KILLS or mid_import + after_import < MIN_WORKING_KILLS) \
            and rounds < MAX_ROUNDS:
        rounds += 1
        if pending:
            cy.deliver_many(src, pending[:25])
            delivered += len(pending[:25])
            pending = pending[25:]
        before = cy.imap_count(dst)
        p = t.popen("-c", cfg, "run", stderr_path=t.tmp / "kill-run.stderr")
        time.sleep(rng.uniform(0.5, 1.5) * wait)
        if p.poll() is None:
            p.kill()
            p.wait()
            kills += 1
            now_in = cy.imap_count(dst)
            if now_in == before:
                early += 1
                wait = min(wait * 1.5, 8.0)
            elif now_in < delivered:
                mid_import += 1
            else:
                after_import += 1      # all in IMAP; DELE/QUIT not done yet
        else:
            finished += 1
            if p.returncode != 0:
                err = (t.tmp / "kill-run.stderr").read_text(errors="replace")
                bad_exits.append(f"round {rounds}: exit {p.returncode}: {err[-500:]}")
            wait = max(0.1, wait * 0.6)
    if pending:
        cy.deliver_many(src, pending)
    t.note(f"{kills} SIGKILLs: {early} before anything was imported, {mid_import} between "
           f"the first and the last message, {after_import} after all were imported but "
           f"before QUIT; {finished} runs finished by themselves; {rounds} rounds")

    r = t.bridge("-c", cfg, "run", timeout=300)
    assert not bad_exits, "runs after a kill failed: " + " | ".join(bad_exits[:3])
    assert r.rc == 0, f"final run exited {r.rc}"
    assert_exactly_once(raws, cy.imap_messages(dst))
    assert cy.pop3_count(src) == 0, "keep = false but messages are left on the Cyrus POP3 server"
    assert kills >= MIN_KILLS, f"only {kills} runs could be killed while working"
    assert mid_import + after_import >= MIN_WORKING_KILLS, \
        (f"only {mid_import + after_import} of {kills} kills landed while mail was moving "
         f"(the machine may be too slow or too fast for the adaptive wait)")


# ------------------------------------------------------------------ check
def test_cyrus_check(t):
    cy = cyrus(t)
    src, dst = t.user(cy, "s"), t.user(cy, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:3]]
    cy.deliver_many(src, raws)
    cfg = t.config([cy.account("cychk", src, dst, keep=False),
                    cy.account("cychkmb", src, dst, keep=False, mailbox="NoSuchFolder")])

    r = t.bridge("-c", cfg, "check", "cychk")
    out = r.output
    assert r.rc == 0, f"check exited {r.rc}"
    assert "cychk" in out, "check output does not name the account"
    assert re.search(r"TLSv1\.[23]", out), "check output does not show the TLS version"
    assert "UIDL" in out, "check output does not list the POP3 capabilities (UIDL)"
    assert "MULTIAPPEND" in out, "check output does not list the IMAP capabilities (MULTIAPPEND)"
    # Cyrus says APPENDLIMIT=4294967295 for "no limit"; popbridge shows "none".
    assert re.search(r"APPENDLIMIT (none|\d+)", out), \
        "check output does not show Cyrus's APPENDLIMIT"
    assert re.search(r"\b3\b[^\n]*messag|messag[^\n]*\b3\b", out, re.I), \
        "check output does not show the 3 waiting messages"
    assert re.search(r"CN\s*=\s*localhost", out), "check output does not show the certificate subject"
    assert re.search(r"INBOX[^\n]*exists|exists[^\n]*INBOX", out), \
        "check output does not say that the target mailbox exists"
    assert cy.pop3_count(src) == len(raws), "check deleted POP3 messages"
    assert cy.imap_count(dst) == 0, "check imported messages"

    r = t.bridge("-c", cfg, "check", "cychkmb")
    assert re.search(r"NoSuchFolder[^\n]*(not exist|n't exist|missing|no such|not found)",
                     r.output, re.I), "check does not say that the target mailbox is missing"

    r = run_ok(t, cfg, "cychk")
    assert cy.imap_count(dst) == len(raws), "check left state that hides messages"


# ------------------------------------------------------------------ mixed families
def test_cyrus_pop3_to_dovecot_imap(t):
    cy = cyrus(t)
    dc = t.dovecot()
    src, dst = t.user(cy, "s"), t.user(dc, "d")
    labelled = varied_messages(t.name)
    raws = [raw for _, raw in labelled]
    cy.deliver_many(src, raws)
    cfg = t.config([make_account("cy2dc", cy.pop3_block(src), dc.imap_block(dst), keep=False)])

    r = run_ok(t, cfg)
    check_import(dc.imap_messages(dst), labelled, "Dovecot INBOX")
    assert cy.pop3_count(src) == 0, "keep = false but messages are still on the Cyrus POP3 server"
    assert summary_line(r.stderr, "cy2dc") == (len(raws), len(raws), 0, len(raws))
    r2 = run_ok(t, cfg)
    assert summary_line(r2.stderr, "cy2dc")[:2] == (0, 0), "second run imported again"
    assert dc.imap_count(dst) == len(raws)


def test_dovecot_pop3_to_cyrus_imap(t):
    cy = cyrus(t)
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(cy, "d")
    labelled = varied_messages(t.name)
    raws = [raw for _, raw in labelled]
    for raw in raws:
        dc.deliver(src, raw)
    cfg = t.config([make_account("dc2cy", dc.pop3_block(src), cy.imap_block(dst), keep=False)])

    r = run_ok(t, cfg)
    check_import(cy.imap_messages(dst), labelled, "Cyrus INBOX")
    assert dc.pop3_count(src) == 0, "keep = false but messages are still on the Dovecot POP3 server"
    assert summary_line(r.stderr, "dc2cy") == (len(raws), len(raws), 0, len(raws))
    run_ok(t, cfg)
    assert cy.imap_count(dst) == len(raws), "second run changed the Cyrus INBOX"


# ------------------------------------------------------------------ Cyrus as the IMAP target
def test_cyrus_trycreate_nested_mailbox(t):
    """A missing mailbox: Cyrus answers NO [TRYCREATE]; popbridge creates it,
    nested with Cyrus's separator "/"."""
    cy = cyrus(t)
    src, dst = t.user(cy, "s"), t.user(cy, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    cy.deliver_many(src, raws)
    cfg = t.config([cy.account("cytc", src, dst, mailbox="Archive/2024")])

    run_ok(t, cfg)
    assert_exactly_once(raws, cy.imap_messages(dst, "Archive/2024"), "Archive/2024")
    assert cy.imap_count(dst) == 0, "mail went to INBOX instead of Archive/2024"


def test_cyrus_nul_8bit_long_lines_via_binary(t):
    """A POP3 server that serves NUL bytes, raw 8-bit headers, a bare CR and
    a 3000-character line (tests/fakepop3.py) into Cyrus: NUL travels as a
    literal8 (Cyrus offers BINARY) and is stored; Cyrus itself replaces each
    8-bit byte of a header with "X" (munge8bit, on by default)."""
    cy = cyrus(t)
    dst = t.user(cy, "d")
    tag = t.short

    def m(n, subject, body, extra=b""):
        return (b"Date: Mon, 1 Jan 2024 10:0" + str(n).encode() + b":00 +0000\n"
                b"Subject: " + subject + b"\nMessage-ID: <bin" + str(n).encode() + b"."
                + tag.encode() + b"@example.org>\n" + extra + b"\n" + body)
    nul = m(1, b"nul bytes", b"before\x00after\n\x00\x00\n")
    hdr8 = m(2, "8-bit Grüße".encode(), "body äöü\n".encode(), "From: Jörg <j@example.org>\n".encode())
    cr = m(3, b"bare cr", b"one\rtwo\n")
    long_line = m(4, b"long line", b"L" * 3000 + b"\n")
    latin1 = m(5, b"latin-1 body", b"\xe4\xf6\xfc\xff\n")
    srv = FakePOP3([nul, hdr8, cr, long_line, latin1]).start()
    try:
        cfg = t.config([make_account("cybin", srv.pop3_block(), cy.imap_block(dst), keep=False)])
        r = run_ok(t, cfg)
        assert summary_line(r.stderr, "cybin") == (5, 5, 0, 5)
        assert not srv.remaining(), "keep = false but messages are left on the POP3 server"
    finally:
        srv.stop()
    got = {re.search(rb"^Subject: (.*)\r$", mm["body"], re.M).group(1): mm["body"]
           for mm in cy.imap_messages(dst)}

    def crlf(raw):  # popbridge's normalisation: LF -> CRLF, a bare CR stays
        return re.sub(rb"(?<!\r)\n", b"\r\n", raw)
    assert got.get(b"nul bytes") == crlf(nul), "the message with NUL bytes was changed"
    assert got.get(b"bare cr") == crlf(cr), "the message with a bare CR was changed"
    assert got.get(b"long line") == crlf(long_line), "the 3000-character line was changed"
    assert got.get(b"latin-1 body") == crlf(latin1), "the 8-bit body was changed"
    munged = crlf(hdr8).replace("Grüße".encode(), b"GrXXXXe").replace("Jörg".encode(), b"JXXrg")
    stored = [v for k, v in got.items() if k.startswith(b"8-bit")]
    assert stored, "the message with 8-bit headers is missing"
    assert stored[0] in (crlf(hdr8), munged), \
        f"8-bit header message stored as {stored[0][:120]!r}"
    if stored[0] == munged:
        t.note("Cyrus replaced the 8-bit header bytes with X (munge8bit); the body is intact")


def test_cyrus_appendlimit_and_over_quota(t):
    """maxmessagesize 100K: Cyrus advertises APPENDLIMIT=102400 and
    popbridge keeps a bigger message on the POP3 server (exit 65).  A STORAGE
    quota: Cyrus answers "NO Over quota" (no [OVERQUOTA] code); popbridge
    stops the account, deletes nothing, exits 75."""
    cy = cyrus(t, maxmessagesize="100K", quota_storage="300K")
    dc = t.dovecot()

    def msg(i, size):
        head = (f"Date: Fri, 1 Nov 2024 10:00:{i:02d} +0000\nSubject: [{t.name}] m{i}\n"
                f"Message-ID: <lim{i}.{t.short}@example.org>\n\n").encode()
        return head + (b"y" * 76 + b"\n") * (size // 77)

    # APPENDLIMIT
    src, dst = t.user(dc, "s"), t.user(cy, "d")
    small1, big, small2 = msg(1, 2000), msg(2, 150_000), msg(3, 3000)
    for raw in (small1, big, small2):
        dc.deliver(src, raw)
    cfg = t.config([make_account("cylim", dc.pop3_block(src), cy.imap_block(dst), keep=False)],
                   name="lim.conf")
    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == EX_DATAERR, f"exit {r.rc}, expected {EX_DATAERR} (one message refused)"
    assert re.search(r"APPENDLIMIT", r.stderr), "popbridge does not say the message is over APPENDLIMIT"
    assert_exactly_once([small1, small2], cy.imap_messages(dst))
    assert dc.pop3_count(src) == 1, "the message over the limit was not kept on POP3"
    # What popbridge avoids by reading APPENDLIMIT: a LITERAL+ APPEND over
    # the limit is refused with [TOOBIG] and the connection is closed.
    raw = RawIMAP(cy, dst)
    lines, closed = [], False
    try:
        # Cyrus answers on seeing the literal's size: send only its start.
        raw.f.write(b"b1 APPEND INBOX {%d+}\r\n" % len(big) + big[:1000])
        raw.f.flush()
        for _ in range(3):
            ln = raw.f.readline()
            lines.append(ln)
            if not ln:
                closed = True
                break
    except OSError:         # a reset: the server closed with our data unread
        closed = True
    finally:
        raw.close()
    text = b"".join(lines)
    assert b"b1 NO [TOOBIG]" in text, f"APPEND over maxmessagesize: {text[:300]!r}"
    assert b"* BYE [TOOBIG]" in text and closed, \
        f"Cyrus kept the connection after a too big LITERAL+ APPEND: {text[:300]!r}"

    # Over quota: six 90 KB messages for a 300 KB quota.
    src, dst = t.user(dc, "s"), t.user(cy, "d")
    raws = [msg(10 + i, 90_000) for i in range(6)]
    for raw in raws:
        dc.deliver(src, raw)
    cfg = t.config([make_account("cyquota", dc.pop3_block(src), cy.imap_block(dst), keep=False)],
                   name="quota.conf")
    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == EX_TEMPFAIL, f"exit {r.rc}, expected {EX_TEMPFAIL} (over quota)"
    assert re.search(r"quota", r.stderr, re.I), "popbridge does not say the mailbox is over quota"
    assert dc.pop3_count(src) == len(raws), "over quota, yet POP3 messages were deleted"
    stored = cy.imap_messages(dst)
    for mm in stored:
        assert mm["body"] in [normalise(x) for x in raws], "a changed message was stored"
    t.note(f"over quota: {len(stored)} of {len(raws)} messages stored before popbridge stopped")
    # After the quota is raised the next run brings the rest, none twice.
    cy.set_quota(dst, "10M")
    run_ok(t, cfg)
    assert_exactly_once(raws, cy.imap_messages(dst))
    assert dc.pop3_count(src) == 0


def test_cyrus_all_sasl_mechanisms(t):
    """A Cyrus offering every SASL mechanism its sasldb allows (SCRAM,
    DIGEST-MD5, CRAM-MD5, PLAIN, LOGIN ...): popbridge still logs in on both
    sides and imports."""
    cy = cyrus(t, mechs=None)
    src, dst = t.user(cy, "s"), t.user(cy, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    cy.deliver_many(src, raws)
    c = cy.imap(src)
    try:
        typ, data = c.capability()
        offered = sorted(x[5:] for x in data[0].decode().split() if x.startswith("AUTH="))
    finally:
        c.logout()
    t.note(f"Cyrus offers AUTH={' '.join(offered)}")
    cfg = t.config([cy.account("cymech", src, dst, keep=False)])
    run_ok(t, cfg)
    assert_exactly_once(raws, cy.imap_messages(dst))
    assert cy.pop3_count(src) == 0
    # The test's own clients log in with LOGIN/USER+PASS ("plaintext" in
    # Cyrus's log); popbridge's logins are the SASL ones.
    mechs = sorted({m.group(1) for ln in cy.logins(src) + cy.logins(dst)
                    for m in [re.search(r"\] \S+ (\S+?)(?:\+TLS)? User logged in", ln)]
                    if m and m.group(1) != "plaintext"})
    if cy.has_log:
        assert mechs, "no SASL login of popbridge in Cyrus's log"
        t.note(f"popbridge logged in with {', '.join(mechs)}")


def test_cyrus_migrate_nested_mailbox(t):
    """popbridge migrate from Cyrus POP3 into a new nested Cyrus folder
    (imaps://host/Archive/Old: the URL path is the mailbox, "/" Cyrus's
    separator): the dry run changes nothing, the migration moves all, the
    same command again moves nothing."""
    cy = cyrus(t)
    src, dst = t.user(cy, "s"), t.user(cy, "d")
    labelled = varied_messages(t.name)
    raws = [raw for _, raw in labelled]
    cy.deliver_many(src, raws)
    env = {"POPBRIDGE_POP3_PASSWORD": cy.users[src], "POPBRIDGE_IMAP_PASSWORD": cy.users[dst]}
    cmd = ["migrate", cy.url("pop3"), cy.url("imap") + "/Archive/Old", "--user-pop", src,
           "--user-imap", dst, "--ca-file", cy.ca_file, "--state-dir", t.tmp / "mig"]
    r = t.bridge(*cmd, "--dry-run", env=env)
    assert r.rc == 0, f"migrate --dry-run exited {r.rc}"
    assert re.search(r"\b6 messages\b", r.output), "the dry run does not count the 6 messages"
    assert re.search(r"Archive/Old[^\n]*created", r.output), \
        "the dry run does not say that Archive/Old will be created"
    assert cy.spool_count(src) == len(raws)
    r = t.bridge(*cmd, "--delete", env=env)
    assert r.rc == 0, f"migrate exited {r.rc}"
    check_import(cy.imap_messages(dst, "Archive/Old"), labelled, "Archive/Old")
    assert cy.spool_count(src) == 0, "migrate --delete left messages on the Cyrus POP3 server"
    r = t.bridge(*cmd, "--delete", env=env)
    assert r.rc == 0 and cy.imap_count(dst, "Archive/Old") == len(raws), \
        "migrate run again changed Archive/Old"


# ------------------------------------------------------------------ odd settings
# popbridge behaviour that is wrong against Cyrus and not fixed yet: the
# test that finds it asserts today's behaviour while its name is here, and
# fails, asking for the entry to be removed, once popbridge is fixed.
KNOWN_BUGS: set = set()   # empty: [LOGIN-DELAY] at login is now a temporary failure

ODD = {"conf": (("popminpoll", "8s"), ("unixhierarchysep", "no"))}


def odd_cyrus(t):
    """A Cyrus with popminpoll 8 s (POP3 logins of one user at least 8 s
    apart, else "-ERR [LOGIN-DELAY] ...") and the netnews hierarchy
    separator "." (unixhierarchysep: no)."""
    return cyrus(t, conf=dict(ODD["conf"]))


def test_cyrus_login_delay_is_temporary(t):
    """RFC 2449 LOGIN-DELAY: a POP3 login too soon after the last one is
    refused with -ERR [LOGIN-DELAY]; that is a temporary condition (exit 75,
    the password is right), and nothing is deleted."""
    cy = odd_cyrus(t)
    src, dst = t.user(cy, "s"), t.user(cy, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    cy.deliver_many(src, raws)
    c = poplib.POP3_SSL(cy.host, cy.pop3s_port, context=cy.ssl_context(), timeout=30)
    try:
        assert c.capa().get("LOGIN-DELAY") == ["8"], "CAPA does not announce LOGIN-DELAY 8"
        c.user(src)
        c.pass_(cy.users[src])           # the login that starts the delay
    finally:
        c.quit()
    cfg = t.config([cy.account("cydelay", src, dst, keep=False)])
    r = t.bridge("-c", cfg, "-v", "run")
    assert re.search(r"LOGIN-DELAY", r.stderr), \
        "popbridge does not show the server's -ERR [LOGIN-DELAY]"
    assert cy.imap_count(dst) == 0
    assert cy.spool_count(src) == len(raws), "messages were deleted although nothing was imported"
    if "login-delay-is-auth" in KNOWN_BUGS:
        assert r.rc == EX_NOPERM, (f"exit {r.rc}: popbridge's LOGIN-DELAY handling changed; if it "
                                   f"is fixed (75), remove 'login-delay-is-auth' from KNOWN_BUGS")
        t.note("KNOWN BUG: -ERR [LOGIN-DELAY] is reported as a refused login (exit 77), "
               "not as a temporary failure (75)")
    else:
        assert r.rc == EX_TEMPFAIL, \
            f"exit {r.rc}, expected {EX_TEMPFAIL} ([LOGIN-DELAY] is temporary)"
    # After the delay the same account imports.
    time.sleep(9)
    run_ok(t, cfg)
    assert_exactly_once(raws, cy.imap_messages(dst))


def test_cyrus_netnews_separator(t):
    """unixhierarchysep: no: Cyrus's separator is ".", so mailbox =
    "Archive.2024" is a folder inside Archive, and "Archive/2024" is refused
    by Cyrus ("NO Invalid mailbox name"): the run fails, deletes nothing."""
    cy = odd_cyrus(t)
    dst = t.user(cy, "d")
    c = cy.imap(dst)
    try:
        typ, data = c.list()
        assert typ == "OK" and all(b') "." ' in d for d in data if d), \
            f"hierarchy separator is not '.': {data}"
    finally:
        c.logout()
    src1, src2 = t.user(cy, "s"), t.user(cy, "s")
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    cy.deliver_many(src1, raws)
    cy.deliver_many(src2, raws)
    cfg = t.config([cy.account("cydot", src1, dst, keep=False, mailbox="Archive.2024"),
                    cy.account("cyslash", src2, dst, keep=False, mailbox="Archive/2024")])
    run_ok(t, cfg, "cydot")
    assert_exactly_once(raws, cy.imap_messages(dst, "Archive.2024"), "Archive.2024")
    r = t.bridge("-c", cfg, "-v", "run", "cyslash")
    assert r.rc != 0, "a mailbox name Cyrus refuses did not fail the run"
    assert re.search(r"Invalid mailbox name", r.stderr), "popbridge does not show Cyrus's refusal"
    assert cy.spool_count(src2) == len(raws), "messages were deleted although nothing was imported"
    t.note(f"mailbox \"Archive/2024\" on a '.' server: exit {r.rc}")
