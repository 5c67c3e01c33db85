"""popbridge against Courier-IMAP 5.0, Courier POP3 1.0 and popa3d 1.0
(Debian 12's packages, unpacked by scripts/courier-fetch.sh and run in a
private mount namespace by tests/courier.py), in the pairings of issue 11:

    Courier POP3 -> Courier IMAP      popa3d -> Courier IMAP
    popa3d -> Dovecot IMAP            Dovecot POP3 -> Courier IMAP

Each pairing imports a few varied messages (harness.varied_messages plus
the cases these servers are known to treat specially: raw 8-bit headers,
a bare CR, a Date at the epoch, two messages with the same headers, two
identical copies) with keep = true (pop3s + imaps) and keep = false
(STARTTLS, or plain POP3 for popa3d, which has no STLS), and checks the
correct outcome: every message exactly once, unread, INTERNALDATE from the
Date header (else the newest Received), and the bytes the POP3 server
served, normalised as popbridge specifies, as far as the IMAP server keeps
them; a second run imports nothing.

"As far as the server keeps them": these servers change some bytes by
design, and the tests compare with what they can keep (Courier.kept,
Popa3d.kept):
* popa3d serves a body line "From ..." as ">From ..." (mboxo escaping is
  not undone), and CR LF stored in the mbox as CR CR LF, as Courier POP3
  does for a Maildir file with CR LF (the tests' deliver() stores LF line
  ends, as an MDA does);
* Courier-IMAP removes every bare CR on APPEND, and keeps no INTERNALDATE
  at the epoch (1 Jan 1970 00:00:00 UTC: it stores the APPEND time);
* the expected bytes are what the POP3 server served (read before the
  run), for Courier POP3 after UTF8 (RFC 6856): without it Courier serves a
  "Cannot display Unicode content" wrapper instead of a message whose
  header has 8-bit bytes, and popbridge must not store the wrapper.

Each pairing also has a kill -9 loop with keep = false (harness.InterruptLoop,
the loop of test_crash, aimed within the import as measured here and now,
rerun at once, until KILL_MID kills (5) landed mid-work); once the target
has ended every IMAP session of the killed runs (Courier: no imapd of the
user left, Courier.open_sessions), a final run, then every message exactly
once in IMAP as the servers keep it, POP3 empty, the final run exit 0.

Beside the pairings: the server facts these comparisons rely on; a Date
before 1970 into Courier (which refuses such an INTERNALDATE: the message
must be imported all the same); a lost ledger against Courier (the copies
there are adopted, except one Courier changed); Courier's "INBOX." folder
names; Courier's plain ports; `popbridge check` against each server.

Each pairing test collects every problem it finds (both keep variants)
and fails with all of them, so that one run shows what popbridge does
wrong against a server.  If Courier or popa3d cannot run here every test
fails, saying why: these tests never pass without the servers answering.
"""

import os
import poplib
import re
import signal
import socket

from courier import Courier, CourierUnavailable, Popa3d
from harness import (LOOPBACK, InterruptLoop, describe, expected_internaldate, make_account,
                     varied_messages, write_config)

def _instance(t, cls):
    """The file's shared instance of cls; fails the test, with the reason,
    where it cannot run."""
    return t.server((cls.__name__,), lambda: cls().start(), title=cls.__name__,
                    unavailable=CourierUnavailable)


def courier(t) -> Courier:
    return _instance(t, Courier)


def popa3d(t) -> Popa3d:
    return _instance(t, Popa3d)


# ------------------------------------------------------------------ messages
def quirk_messages(tag):
    """Messages these servers treat specially, as (label, raw)."""
    def msg(label, date, subject, body, extra=""):
        head = (f"Date: {date}\n" if date else "") + (
            f"From: Sender <sender@example.org>\nTo: rcpt@example.net\n"
            f"Subject: [{tag}] {subject}\nMessage-ID: <{label}.{tag}@example.org>\n{extra}\n")
        return head.encode() + body
    same = ("Date: Tue, 10 Sep 2024 08:00:00 +0000\nFrom: list@example.org\n"
            f"Subject: [{tag}] same headers\nMessage-ID: <same.{tag}@example.org>\n\n")
    copy = (f"Date: Wed, 11 Sep 2024 09:00:00 +0000\nFrom: twice@example.org\n"
            f"Subject: [{tag}] an identical copy\nMessage-ID: <copy.{tag}@example.org>\n\n"
            "The same message, delivered twice.\n").encode()
    return [
        ("8bit-header", msg("h8", "Mon, 2 Sep 2024 10:00:00 +0200",
                            "Grüße aus Köln (raw 8-bit header)", "Körper äöü\n".encode(),
                            "Cc: Jörg Müller <joerg@example.de>\n").replace(
                                b"From: Sender", "From: Zoë Sender".encode())),
        ("bare-cr", msg("cr", "Tue, 3 Sep 2024 11:00:00 +0000", "a bare CR in the body",
                        b"one\rtwo\nthree\n")),
        ("date-epoch", msg("epoch", "Thu, 1 Jan 1970 00:00:00 +0000",
                           "Date at the epoch", b"An old mailer's placeholder date.\n")),
        ("same-headers-1", same.encode() + b"First of two messages with the same headers.\n"),
        ("same-headers-2", same.encode() + b"Second of two messages with the same headers.\n"),
        ("copy-1", copy),
        ("copy-2", copy),
    ]


def all_messages(tag):
    return varied_messages(tag) + quirk_messages(tag)


def pb_norm(served: bytes) -> bytes:
    """popbridge's normalisation of what a POP3 server served (README):
    line ends CR LF (a bare CR stays), a leading mbox From_ line dropped, a
    final CR LF ensured; every other byte unchanged."""
    data = served.replace(b"\r\n", b"\n")
    if data.startswith(b"From "):
        nl = data.find(b"\n")
        data = b"" if nl < 0 else data[nl + 1:]
    if not data.endswith(b"\n"):
        data += b"\n"
    return data.replace(b"\n", b"\r\n")


def served_by(src, user):
    """[(uidl, bytes)] as the POP3 server serves them to a client that
    speaks RFC 6856 where the server offers it (Courier POP3)."""
    if isinstance(src, Courier):
        return src.pop3_messages(user, utf8=True)
    return src.pop3_messages(user)


def kept_by(dst):
    return getattr(dst, "kept", lambda b: b)


def date_kept(dst, want):
    """Can the IMAP server keep INTERNALDATE `want`?  Courier stores it as
    the file's mtime, takes 0 (the epoch) for "none" and refuses an APPEND
    with a date before 1970; Dovecot stores a date before 1970 as
    13-Dec-1901 20:45:52 +0000 (the smallest 32-bit time)."""
    ts = want.timestamp()
    return ts > 0 if isinstance(dst, Courier) else ts >= 0


def summary(stderr, account):
    m = re.search(rf"^.*\b{re.escape(account)}: (\d+) new, (\d+) imported, (\d+) failed, "
                  rf"(\d+) deleted\b.*$", stderr, re.M)
    return tuple(int(x) for x in m.groups()) if m else None


def error_lines(r, limit=6):
    """popbridge's lines that say what went wrong (for the failure text)."""
    lines = [ln.strip() for ln in r.stderr.splitlines()
             if re.search(r"not imported|refused|error|-ERR|\bNO\b|\bBAD\b|cannot|fatal|"
                          r"\d+ failed", ln, re.I) and "offers no SASL" not in ln]
    return " | ".join(lines[:limit]) or (r.stderr.strip().splitlines() or ["(no output)"])[-1]


def put(src, user, raws):
    for raw in raws:
        src.deliver(user, raw)


def compare(dst, msgs, labelled, served, what):
    """Every problem of `msgs` (the IMAP mailbox after the import) against
    the messages: exactly once, bytes, INTERNALDATE, no flags."""
    problems, notes = [], []
    keep = kept_by(dst)
    want = {}       # expected body -> [labels]
    for (label, raw), (_, body) in zip(labelled, served):
        want.setdefault(keep(pb_norm(body)), []).append((label, raw))
    got = {}
    for m in msgs:
        got.setdefault(m["body"], []).append(m)
    for body, items in want.items():
        have = got.get(body, [])
        labels = "/".join(label for label, _ in items)
        if len(have) < len(items):
            problems.append(f"{what}: {labels}: {len(have)} of {len(items)} in IMAP "
                            "(missing, or stored with other bytes)")
        elif len(have) > len(items):
            problems.append(f"{what}: {labels}: {len(have)} copies in IMAP, {len(items)} expected")
        for (label, raw), m in zip(items, have):
            d = expected_internaldate(raw)
            if d is not None and not date_kept(dst, d):
                notes.append(f"{what}: {label}: INTERNALDATE {m['internaldate_raw']}, "
                             f"{type(dst).__name__} cannot keep {d.isoformat()}")
            elif d is not None and m["internaldate"] != d:
                problems.append(f"{what}: {label}: INTERNALDATE {m['internaldate_raw']}, "
                                f"expected {d.isoformat()} (from the message's headers)")
            if m["flags"]:
                problems.append(f"{what}: {label}: flags {sorted(m['flags'])}, expected none "
                                "(unread)")
    extra = [m for b, ms in got.items() if b not in want for m in ms]
    for m in extra[:5]:
        problems.append(f"{what}: unexpected message in IMAP: {describe(m['body'])!r} "
                        f"({len(m['body'])} bytes, starts {m['body'][:60]!r})")
    if len(extra) > 5:
        problems.append(f"{what}: {len(extra) - 5} more unexpected messages")
    return problems, notes


def pairing(t, src, dst, keep):
    """Import all_messages from `src` (POP3) to `dst` (IMAP) with `keep`;
    return (problems, notes).  keep = true over pop3s/imaps, keep = false
    over STARTTLS (popa3d: plain POP3, it has no STLS)."""
    v = "k" if keep else "d"
    tag = f"{t.name}.{v}"
    labelled = all_messages(tag)
    raws = [raw for _, raw in labelled]
    s_user, d_user = t.user(src, "s" + v), t.user(dst, "d" + v)
    put(src, s_user, raws)
    served = served_by(src, s_user)
    what = f"keep={'true' if keep else 'false'}"
    if len(served) != len(raws):
        return [f"{what}: the POP3 server lists {len(served)} messages for {len(raws)} "
                "delivered (test set-up)"], []
    if keep:
        pop3 = src.pop3_block(s_user)
        imap = dst.imap_block(d_user)
    else:
        pop3 = src.pop3_block(s_user, mode="plain" if isinstance(src, Popa3d) else "starttls")
        imap = dst.imap_block(d_user, mode="starttls")
    name = f"{t.short}{v}"
    cfg = t.config([make_account(name, pop3, imap, keep=keep)], name=f"{name}.conf")
    problems, notes = [], []

    r1 = t.bridge("-c", cfg, "-v", "run")
    if r1.rc != 0:
        problems.append(f"{what}: popbridge run exited {r1.rc}: {error_lines(r1)}")
    s1 = summary(r1.stderr, name)
    msgs = dst.imap_messages(d_user)
    p, n = compare(dst, msgs, labelled, served, what)
    problems += p
    notes += n
    left = src.pop3_count(s_user)
    if keep and left != len(raws):
        problems.append(f"{what}: {left} messages left on POP3 of {len(raws)}")
    if not keep and left != 0 and r1.rc == 0:
        problems.append(f"{what}: {left} messages left on POP3 after a run that exited 0")

    r2 = t.bridge("-c", cfg, "-v", "run")
    s2 = summary(r2.stderr, name)
    after = dst.imap_count(d_user)
    if r1.rc == 0 and r2.rc != 0:
        problems.append(f"{what}: second run exited {r2.rc}: {error_lines(r2)}")
    if after != len(msgs):
        problems.append(f"{what}: the second run changed IMAP from {len(msgs)} to {after} "
                        "messages")
    if r1.rc == 0 and s2 and s2[1] != 0:
        problems.append(f"{what}: the second run imported {s2[1]} again")
    notes.append(f"{what}: run 1 {s1 or 'no summary'} (new, imported, failed, deleted), "
                 f"run 2 {s2 or 'no summary'}")
    return problems, notes


def check_pairing(t, src, dst):
    problems, notes = [], []
    for keep in (True, False):
        p, n = pairing(t, src, dst, keep)
        problems += p
        notes += n
    for n in notes:
        t.note(n)
    assert not problems, f"{len(problems)} problems: " + "; ".join(problems)


# ------------------------------------------------------------------ the servers themselves
def test_courier_and_popa3d_as_the_tests_expect(t):
    """The server behaviour the pairing tests rely on (tests/courier.py)."""
    co, pa = courier(t), popa3d(t)
    labelled = all_messages(t.name)
    raws = [raw for _, raw in labelled]

    # popa3d: serves what Popa3d.kept says; UIDLs repeat for equal headers;
    # no CAPA; CR LF stored in the mbox comes back as CR CR LF.
    u = t.user(pa, "p")
    put(pa, u, raws)
    served = pa.pop3_messages(u)
    assert len(served) == len(raws), f"popa3d lists {len(served)} of {len(raws)}"
    for (uidl, body), (label, raw) in zip(served, labelled):
        assert body == Popa3d.kept(raw), \
            f"popa3d serves {label} as {body[:200]!r}, not as Popa3d.kept says"
    uidls = [uidl for uidl, _ in served]
    by_label = dict(zip([label for label, _ in labelled], uidls))
    assert by_label["same-headers-1"] == by_label["same-headers-2"], \
        "popa3d gave messages with the same headers different UIDLs"
    t.note(f"popa3d: {len(set(uidls))} distinct UIDLs for {len(uidls)} messages")
    c = poplib.POP3(pa.host, pa.pop3_port, timeout=30)
    try:
        try:
            capa = c.capa()
        except poplib.error_proto as e:
            capa = str(e)
    finally:
        c.quit()
    assert "-ERR" in str(capa), f"popa3d answers CAPA: {capa}"
    u2 = t.user(pa, "p")
    pa.deliver(u2, b"Subject: crlf\r\n\r\na\r\nb\r\n", crlf=True)
    assert pa.pop3_messages(u2)[0][1].startswith(b"Subject: crlf\r\r\n"), \
        "popa3d no longer serves CR LF of the mbox as CR CR LF"

    # Courier POP3: CAPA, UIDL form, the Unicode wrapper without UTF8.
    u = t.user(co, "c")
    put(co, u, raws)
    c = poplib.POP3_SSL(co.host, co.pop3s_port, context=co.ssl_context(), timeout=30)
    try:
        capa = c.capa()
        c.user(u)
        c.pass_(co.users[u])
        pop3_open = co.open_sessions(u, ("pop3",))
        listing = [ln.split()[1].decode() for ln in c.uidl()[1]]
        plain = [b"\r\n".join(c.retr(i + 1)[1]) + b"\r\n" for i in range(len(raws))]
    finally:
        c.quit()
    for k in ("UIDL", "TOP", "USER", "UTF8", "PIPELINING"):
        assert k in capa, f"Courier POP3 CAPA lacks {k}: {capa}"
    assert all(re.fullmatch(r"UID\d+-\d+", x) for x in listing), f"Courier UIDLs: {listing}"
    assert len(pop3_open) == 1 and co.wait_sessions_ended(u, 30, ("pop3",)), \
        (f"Courier.open_sessions saw {pop3_open} for one POP3 session, or it did not end "
         f"after QUIT: {co.open_sessions(u)}")
    wrapped = [label for (label, _), body in zip(labelled, plain)
               if b"Cannot display Unicode content" in body]
    assert wrapped == ["8bit-header"], \
        f"Courier POP3 without UTF8 wraps {wrapped}, expected only the 8-bit header message"
    utf8 = co.pop3_messages(u, utf8=True)
    for (label, raw), (_, body) in zip(labelled, utf8):
        assert pb_norm(body) == pb_norm(raw), \
            f"Courier POP3 after UTF8 serves {label} as {body[:200]!r}"

    # Courier IMAP: namespace, capabilities, bare CR, the epoch, APPEND
    # into a mailbox selected read-only.
    d = t.user(co, "i")
    s = socket.create_connection((LOOPBACK, co.imap_port), timeout=30)
    f = s.makefile("rwb")

    def cmd(tag, line, literal=None):
        f.write(tag + b" " + line + (b" {%d}\r\n" % len(literal) if literal is not None
                                     else b"\r\n"))
        f.flush()
        out = []
        if literal is not None:
            cont = f.readline()
            if not cont.startswith(b"+"):
                return [cont]
            f.write(literal + b"\r\n")
            f.flush()
        while True:
            ln = f.readline()
            out.append(ln)
            if not ln or ln.startswith(tag + b" "):
                return out
    try:
        greeting = f.readline()
        assert b"Courier-IMAP ready" in greeting, greeting
        assert not co.open_sessions(d), f"a session before LOGIN: {co.open_sessions(d)}"
        cmd(b"a0", f"LOGIN {d} {co.users[d]}".encode())
        # The observable the kill loops wait on (tests/courier.py S1): one
        # imapd of this user, named by the port of its LOGIN log line.
        imap_open = co.open_sessions(d)
        port = s.getsockname()[1]
        assert len(imap_open) == 1 and imap_open[0]["proto"] == "imap" \
            and f"port={port} " in imap_open[0]["line"], \
            f"Courier.open_sessions after one IMAP LOGIN from port {port}: {imap_open}"
        mark = co.session_mark()
        caps = b"".join(cmd(b"a1", b"CAPABILITY"))
        for k in (b"LITERAL+", b"MULTIAPPEND", b"BINARY", b"APPENDLIMIT"):
            assert k not in caps, f"Courier-IMAP now offers {k}: {caps!r}"
        ns = b"".join(cmd(b"a2", b"NAMESPACE"))
        assert b'(("INBOX." "."))' in ns, f"Courier-IMAP NAMESPACE {ns!r}"
        r = cmd(b"a3", b'APPEND INBOX "01-Jan-1970 00:00:00 +0000"',
                b"Subject: cr\r\n\r\none\rtwo\r\n")[-1]
        assert r.startswith(b"a3 OK"), r
        r = cmd(b"a3b", b'APPEND INBOX "31-Dec-1969 23:59:59 +0000"',
                b"Subject: 1969\r\n\r\nx\r\n")[-1]
        assert r.startswith(b"a3b NO"), f"Courier-IMAP takes a date before 1970: {r!r}"
        t.note(f"Courier-IMAP: APPEND with an INTERNALDATE before 1970: "
               f"{r.decode(errors='replace').strip()}")
        cmd(b"a4", b"EXAMINE INBOX")
        r = cmd(b"a5", b"APPEND INBOX", b"Subject: ro\r\n\r\nx\r\n")[-1]
        t.note(f"Courier-IMAP: APPEND into the mailbox selected with EXAMINE: "
               f"{r.decode(errors='replace').strip()}")
        cmd(b"a6", b"LOGOUT")
    finally:
        f.close()
        s.close()
    assert co.wait_sessions_ended(d, 30, ("imap",), mark), \
        f"the IMAP session did not end after LOGOUT: {co.open_sessions(d)}"
    assert co.stored_count(d) == co.imap_count(d) >= 1, \
        f"Courier.stored_count {co.stored_count(d)}, IMAP says {co.imap_count(d)}"
    m = co.imap_messages(d)[0]
    assert m["body"] == b"Subject: cr\r\n\r\nonetwo\r\n" == Courier.kept(
        b"Subject: cr\r\n\r\none\rtwo\r\n"), f"Courier-IMAP stored {m['body']!r}"
    assert m["internaldate"].year > 1970, \
        f"Courier-IMAP kept INTERNALDATE {m['internaldate_raw']} at the epoch"


# ------------------------------------------------------------------ the pairings
def test_courier_pop3_to_courier_imap(t):
    co = courier(t)
    check_pairing(t, co, co)


def test_popa3d_to_courier_imap(t):
    check_pairing(t, popa3d(t), courier(t))


def test_popa3d_to_dovecot_imap(t):
    check_pairing(t, popa3d(t), t.dovecot())


def test_dovecot_pop3_to_courier_imap(t):
    check_pairing(t, t.dovecot(), courier(t))


def test_date_before_1970_into_courier(t):
    """Courier-IMAP refuses an APPEND whose INTERNALDATE is before 1970 ("NO
    Error in IMAP command received by server."; it keeps the date as a
    file's mtime).  Such a message must still be imported, once, with
    whatever date the server gives it, not refused at every run and set
    aside.  (Dovecot takes it and stores 13-Dec-1901 20:45:52 +0000.)"""
    co, dc = courier(t), t.dovecot()
    src, dst = t.user(dc, "s"), t.user(co, "d")

    def msg(n, date):
        return (f"Date: {date}\nFrom: old@example.org\nSubject: [{t.name}] dated {date}\n"
                f"Message-ID: <old{n}.{t.short}@example.org>\n\nbody {n}\n").encode()
    raws = [msg(1, "Wed, 31 Dec 1969 23:59:59 +0000"), msg(2, "Mon, 1 Jan 1900 10:00:00 +0000"),
            msg(3, "Thu, 1 Jan 1970 00:00:01 +0000")]
    put(dc, src, raws)
    cfg = t.config([make_account("co1969", dc.pop3_block(src), co.imap_block(dst), keep=False)])
    r = t.bridge("-c", cfg, "-v", "run")
    got = co.imap_messages(dst)
    stored = sorted(m["body"] for m in got)
    missing = [describe(x) for x in raws if pb_norm(x) not in stored]
    assert r.rc == 0 and not missing and len(got) == len(raws), \
        (f"popbridge run exited {r.rc}, {len(got)} of {len(raws)} in IMAP, missing {missing}: "
         f"{error_lines(r)}")
    for m in got:
        t.note(f"{describe(m['body'])}: INTERNALDATE {m['internaldate_raw']}")
    assert dc.pop3_count(src) == 0, "keep = false but messages are left on POP3"


def test_fresh_state_adopts_on_courier(t):
    """A second import of the same POP3 mailbox into the same Courier INBOX
    with a new, empty state_dir (the ledger lost): popbridge finds the
    copies already there by Message-ID, size and content and appends
    nothing again.  The exception the README names: a message Courier
    changed when it stored it (the bare CR removed) is not recognised and
    arrives a second time."""
    co, dc = courier(t), t.dovecot()
    src, dst = t.user(dc, "s"), t.user(co, "d")
    labelled = all_messages(t.name)
    raws = [raw for _, raw in labelled]
    put(dc, src, raws)
    served = served_by(dc, src)
    cfg = t.config([make_account("coad", dc.pop3_block(src), co.imap_block(dst), keep=True)])
    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == 0, f"first run exited {r.rc}: {error_lines(r)}"
    first = co.imap_messages(dst)
    p, _ = compare(co, first, labelled, served, "first run")
    assert not p, "; ".join(p)
    lost = t.tmp / "state-lost"
    lost.mkdir()
    cfg2 = write_config(t.tmp / "lost.conf", [make_account(
        "coad", dc.pop3_block(src), co.imap_block(dst), keep=True)], lost)
    r = t.bridge("-c", cfg2, "-v", "run")
    assert r.rc == 0, f"run with an empty state_dir exited {r.rc}: {error_lines(r)}"
    again = co.imap_messages(dst)
    counts = {}
    for m in again:
        counts[m["body"]] = counts.get(m["body"], 0) + 1
    twice = []
    for (label, raw), (_, body) in zip(labelled, served):
        want = Courier.kept(pb_norm(body))
        n_want = sum(1 for _, b in served if Courier.kept(pb_norm(b)) == want)
        if counts.get(want, 0) != n_want:
            twice.append((label, counts.get(want, 0), n_want))
    changed = {label for label, raw in labelled if Courier.kept(raw) != raw}
    unexpected = [x for x in twice if x[0] not in changed]
    assert not unexpected, ("after the ledger was lost, messages arrived again or went missing "
                            "(label, in IMAP, expected): " + repr(unexpected))
    for label, n, n_want in twice:
        t.note(f"{label}: {n} in IMAP for {n_want} (Courier changed it when storing it: "
               "not recognised, as the README says)")
    t.note(f"{len(again)} messages in INBOX after the second import of {len(raws)}")


def test_courier_imap_folder_under_inbox(t):
    """mailbox = "Archive" on Courier, whose personal namespace is "INBOX.":
    the mail goes to INBOX.Archive (Maildir/.Archive), created if missing;
    "INBOX.Archive" written out goes to the same folder."""
    co, dc = courier(t), t.dovecot()
    src, dst = t.user(dc, "s"), t.user(co, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:3]]
    put(dc, src, raws)
    cfg = t.config([make_account("coarch", dc.pop3_block(src),
                                 co.imap_block(dst, mailbox="Archive"), keep=True)])
    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == 0, f"popbridge run exited {r.rc}: {error_lines(r)}"
    got = co.imap_messages(dst, "INBOX.Archive")
    assert sorted(m["body"] for m in got) == sorted(pb_norm(x) for x in raws), \
        f"INBOX.Archive holds {len(got)} messages, expected the {len(raws)} imported"
    assert co.imap_count(dst) == 0, "mail went to INBOX"
    cfg2 = t.config([make_account("coarch2", dc.pop3_block(src),
                                  co.imap_block(dst, mailbox="INBOX.Archive"), keep=True)],
                    name="full.conf")
    r = t.bridge("-c", cfg2, "-v", "run")
    assert r.rc == 0, f"popbridge run (mailbox INBOX.Archive) exited {r.rc}: {error_lines(r)}"
    assert co.imap_count(dst, "INBOX.Archive") == len(raws), \
        "mailbox = \"INBOX.Archive\" after \"Archive\": the same messages imported twice"


def test_courier_plain_ports(t):
    """tls = "none" on both sides against Courier: POP3 USER/PASS and IMAP
    without TLS, where Courier-IMAP offers no AUTH= method at all."""
    co = courier(t)
    src, dst = t.user(co, "s"), t.user(co, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:3]]
    put(co, src, raws)
    c = socket.create_connection((LOOPBACK, co.imap_port), timeout=30)
    try:
        greeting = c.makefile("rb").readline()
    finally:
        c.close()
    assert b"AUTH=" not in greeting, f"Courier-IMAP offers AUTH= without TLS: {greeting!r}"
    cfg = t.config([co.account("coplain", src, dst, mode="plain", keep=False)])
    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == 0, f"popbridge run exited {r.rc}: {error_lines(r)}"
    got = co.imap_messages(dst)
    assert sorted(m["body"] for m in got) == sorted(pb_norm(x) for x in raws), \
        f"INBOX holds {len(got)} messages, expected the {len(raws)} imported"
    assert co.pop3_count(src) == 0, "keep = false but messages are left on Courier POP3"


# ------------------------------------------------------------------ check
def test_check_courier(t):
    """popbridge check against Courier POP3 and Courier-IMAP: TLS, the
    capabilities, UIDL, the messages waiting, the mailbox (with Courier's
    namespace for a folder); it changes nothing."""
    co = courier(t)
    src, dst = t.user(co, "s"), t.user(co, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:3]]
    put(co, src, raws)
    cfg = t.config([co.account("cochk", src, dst),
                    co.account("cochkst", src, dst, mode="starttls", mailbox="Archive")])
    r = t.bridge("-c", cfg, "check", "cochk")
    out = r.output
    assert r.rc == 0, f"check exited {r.rc}: {error_lines(r)}"
    pop3 = next((ln for ln in out.splitlines() if "pop3" in ln), "")
    imap = next((ln for ln in out.splitlines() if "imap" in ln), "")
    assert re.search(r"TLSv1\.[23]", pop3) and re.search(r"TLSv1\.[23]", imap), \
        f"check does not show TLS for both servers: {out!r}"
    assert re.search(r"CN\s*=\s*localhost", out), "check does not show the certificate subject"
    assert re.search(r"UIDL yes", pop3), f"check does not say Courier POP3 has UIDL: {pop3!r}"
    assert re.search(r"\b3 messages\b", pop3), f"check does not count the 3 waiting: {pop3!r}"
    assert re.search(r"MULTIAPPEND no", imap) and re.search(r"UIDPLUS yes", imap), \
        f"check does not show Courier-IMAP's capabilities: {imap!r}"
    assert re.search(r"mailbox INBOX exists", imap), f"check does not find INBOX: {imap!r}"
    r = t.bridge("-c", cfg, "check", "cochkst")
    assert r.rc == 0, f"check (STARTTLS, mailbox Archive) exited {r.rc}: {error_lines(r)}"
    assert re.search(r"INBOX\.Archive[^\n]*(not exist|created)", r.output), \
        f"check does not name the folder as Courier does (INBOX.Archive): {r.output!r}"
    assert len(re.findall(r"TLSv1\.[23]", r.output)) >= 2, "STARTTLS not shown by check"
    assert co.pop3_count(src) == len(raws) and co.imap_count(dst) == 0, "check changed mail"


def test_check_popa3d(t):
    """popbridge check against popa3d (pop3s through socat, and plain):
    TLS or none, UIDL, no PIPELINING, the messages waiting."""
    pa, dc = popa3d(t), t.dovecot()
    src, dst = t.user(pa, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:3]]
    put(pa, src, raws)
    cfg = t.config([make_account("pachk", pa.pop3_block(src), dc.imap_block(dst)),
                    make_account("pachkpl", pa.pop3_block(src, mode="plain"),
                                 dc.imap_block(dst))])
    r = t.bridge("-c", cfg, "check", "pachk")
    assert r.rc == 0, f"check exited {r.rc}: {error_lines(r)}"
    pop3 = next((ln for ln in r.output.splitlines() if "pop3" in ln), "")
    assert re.search(r"TLSv1\.[23]", pop3), f"check does not show TLS for popa3d: {pop3!r}"
    assert "UIDL yes" in pop3, f"check does not say popa3d has UIDL: {pop3!r}"
    assert "PIPELINING no" in pop3, f"check says popa3d pipelines: {pop3!r}"
    assert re.search(r"\b3 messages\b", pop3), f"check does not count the 3 waiting: {pop3!r}"
    r = t.bridge("-c", cfg, "check", "pachkpl")
    assert r.rc == 0, f"check (plain POP3) exited {r.rc}: {error_lines(r)}"
    pop3 = next((ln for ln in r.output.splitlines() if "pop3" in ln), "")
    assert not re.search(r"TLSv1", pop3), f"plain POP3 shown with TLS: {pop3!r}"
    assert pa.pop3_count(src) == len(raws) and dc.imap_count(dst) == 0, "check changed mail"



# ------------------------------------------------------------------ kill -9 loops
KILL_MID = int(os.environ.get("POPBRIDGE_COURIER_KILLS", "5"))


def kill_loop(t, src, dst, pop3_mode, imap_mode):
    """harness.InterruptLoop from `src` (POP3) to `dst` (IMAP), keep =
    false: kill -9 at moments chosen within the import as measured on this
    machine now, the next run started at once, until KILL_MID kills landed
    mid-work (some but not all of the waiting mail in IMAP, counted in the
    target's Maildir); then, once the target has ended every IMAP session
    of the killed runs (Courier: no imapd process of the user left,
    Courier.open_sessions; Dovecot: its log), one healthy run.  Every
    message must then be in IMAP exactly once, as the servers keep it
    (Popa3d.kept, Courier.kept), none left on POP3, the final run exit 0."""
    def expect(raw):
        served = Popa3d.kept(raw) if isinstance(src, Popa3d) else raw
        return kept_by(dst)(pb_norm(served))
    loop = InterruptLoop(t, src, signal.SIGKILL, name=f"{t.short}k", imap_server=dst,
                         pop3_mode=pop3_mode, imap_mode=imap_mode, expect=expect,
                         max_batch=1000, chain=0.9,
                         calibrate_stat=isinstance(src, Popa3d))
    t.note(f"random seed {loop.seed} (set POPBRIDGE_TEST_SEED to replay another); POP3 "
           f"{pop3_mode}, IMAP {imap_mode}")
    try:
        cal = loop.calibrate()
        t.note(f"calibrated: {cal['n']} messages, first in IMAP after {cal['first']:.2f} s, "
               f"last after {cal['last']:.2f} s, run {cal['end']:.2f} s")
        while loop.mid() < KILL_MID and loop.rounds < 3 * KILL_MID + 10:
            loop.round()
    finally:
        t.note(loop.summary())
    res = loop.finish()
    final = res["final"]
    t.note(f"census: {res['total']} messages, {res['lost']} lost, {res['dup']} duplicated, "
           f"{res['changed']} changed, {res['foreign']} unexpected, {res['missing']} not in "
           f"IMAP, {res['pop3_left']} left on POP3; final run exit {final.rc}")
    problems = []
    if loop.session_waits:
        problems += loop.session_waits
    for key, what in (("lost", "lost (neither in IMAP nor on POP3)"),
                      ("dup", "duplicated in IMAP"),
                      ("changed", "in IMAP with other bytes than expected"),
                      ("missing", "not in IMAP")):
        if res[key]:
            problems.append(f"{res[key]} {what}, e.g. X-Harness-Seq {res[key + '_e']}")
    if res["foreign"]:
        problems.append(f"{res['foreign']} unexpected messages in IMAP, e.g. "
                        f"{res['foreign_e'][:2]}")
    if final.rc != 0:
        problems.append(f"the final run exited {final.rc}: {error_lines(final)}")
    if res["pop3_left"]:
        problems.append(f"keep = false but {res['pop3_left']} messages are left on POP3")
    if len(res["msgs"]) != len(loop.raws):
        problems.append(f"{len(res['msgs'])} messages in IMAP for {len(loop.raws)} delivered")
    assert not problems, f"{len(problems)} problems after {len(loop.kills)} kills " \
                         f"({loop.mid()} mid-work): " + "; ".join(problems)
    assert not loop.bad_exits, "unkilled runs failed: " + " | ".join(loop.bad_exits[:3])
    assert loop.mid() >= KILL_MID, \
        f"only {loop.mid()} kills landed mid-work (wanted {KILL_MID}); {loop.summary()}"


def test_kill9_loop_courier_pop3_to_courier_imap(t):
    co = courier(t)
    kill_loop(t, co, co, "tls", "tls")


def test_kill9_loop_popa3d_to_courier_imap(t):
    kill_loop(t, popa3d(t), courier(t), "plain", "starttls")


def test_kill9_loop_popa3d_to_dovecot_imap(t):
    kill_loop(t, popa3d(t), t.dovecot(), "tls", "tls")


def test_kill9_loop_dovecot_pop3_to_courier_imap(t):
    kill_loop(t, t.dovecot(), courier(t), "starttls", "tls")


def test_plain_pop3_url_to_popa3d_and_to_a_tls_port(t):
    """Issue 11, point 7, against the real servers: pop3:// to popa3d,
    which has no STLS, is a configuration error (78) that says so and sends
    no credentials; pop3:// pointed at a port that speaks TLS from the
    first byte (Dovecot's pop3s) says to use pop3s://."""
    pa, dc = popa3d(t), t.dovecot()
    src, dst = t.user(pa, "s"), t.user(dc, "d")
    put(pa, src, [raw for _, raw in varied_messages(t.name)[:1]])
    block = pa.pop3_block(src, mode="plain")
    block.pop("tls", None)          # STARTTLS required, as by default
    cfg = t.config([make_account("nostls", block, dc.imap_block(dst))])
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 78, f"pop3:// to popa3d (no STLS): exit {r.rc}, want 78"
    assert re.search(r"does not offer STARTTLS; no credentials were sent", r.stderr), \
        error_lines(r)
    assert "pop3s://" in r.stderr, "no hint to use pop3s://"
    assert not pa.logins(src), "credentials reached popa3d in clear"

    ddc_src = t.user(dc, "s2")
    tlsport = dict(dc.pop3_block(ddc_src), url=f"pop3://{dc.host}:{dc.pop3s_port}")
    cfg = t.config([make_account("tlsport", tlsport, dc.imap_block(dst))],
                   extra="timeout = 5;\n", name="tlsport.conf")
    r = t.bridge("-c", cfg, "run")
    assert r.rc in (75, 78), f"pop3:// to a TLS port: exit {r.rc}"
    assert re.search(r"use pop3s://", r.stderr), f"no pop3s:// hint: {error_lines(r)}"
