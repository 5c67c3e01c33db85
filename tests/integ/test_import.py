"""Importing POP3 mail into IMAP: bytes, INTERNALDATE, flags, keep, TLS modes."""

import re

from harness import (assert_bytes_equal, assert_exactly_once, describe,
                     expected_internaldate, normalise, varied_messages)


def summary_line(stderr, account):
    """The `ACCOUNT: N new, N imported, N failed, N deleted, ...` line."""
    m = re.search(rf"^.*\b{re.escape(account)}: (\d+) new, (\d+) imported, (\d+) failed, "
                  rf"(\d+) deleted\b.*$", stderr, re.M)
    assert m, f"no summary line for {account} on stderr ('{account}: N new, N imported, ...')"
    return tuple(int(x) for x in m.groups())


def run_ok(t, cfg, *extra):
    r = t.bridge("-c", cfg, "-v", "run", *extra)
    assert r.rc == 0, f"popbridge run exited {r.rc}, expected 0"
    return r


def deliver_all(dc, user, raws):
    for raw in raws:
        dc.deliver(user, raw)


def test_basic_import_pop3s_to_imaps(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    labelled = varied_messages(t.name)
    raws = [raw for _, raw in labelled]
    deliver_all(dc, src, raws)
    cfg = t.config([dc.account("t1", src, dst)])

    r1 = run_ok(t, cfg)

    msgs = dc.imap_messages(dst)
    assert_exactly_once(raws, msgs)
    by_body = {m["body"]: m for m in msgs}
    for label, raw in labelled:
        m = by_body[normalise(raw)]
        assert_bytes_equal(raw, m["body"])
        want = expected_internaldate(raw)
        # Dovecot keeps the instant only (maildir mtime); it reports it in
        # its own zone, so the offset of the Date header cannot be compared.
        assert m["internaldate"] == want, \
            f"{label}: INTERNALDATE {m['internaldate_raw']} is not the message's date {want}"
        assert m["flags"] == set(), f"{label}: flags {sorted(m['flags'])}, expected none (unread)"
    # Delivery order is kept (UIDs ascend in POP3 order).
    order = [m["body"] for m in msgs]
    assert order == [normalise(raw) for raw in raws], "messages were not appended in POP3 order"

    # A second run imports nothing; keep = true leaves POP3 untouched.
    r2 = run_ok(t, cfg)
    assert dc.imap_count(dst) == len(raws), "second run changed INBOX"
    assert dc.pop3_count(src) == len(raws), "keep = true but POP3 messages were deleted"

    assert summary_line(r1.stderr, "t1") == (len(raws), len(raws), 0, 0), \
        f"first run's summary should say {len(raws)} new, {len(raws)} imported, 0 failed, 0 deleted"
    assert summary_line(r2.stderr, "t1")[:2] == (0, 0), "second run's summary should say 0 new, 0 imported"


def test_starttls_urls(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:3]]
    deliver_all(dc, src, raws)
    acct = dc.account("st", src, dst, mode="starttls")
    assert acct["pop3"]["url"].startswith("pop3://") and acct["imap"]["url"].startswith("imap://")
    cfg = t.config([acct])

    run_ok(t, cfg)
    assert_exactly_once(raws, dc.imap_messages(dst))
    # Every login went over TLS (Dovecot logs "TLS"; a plaintext login on
    # loopback would be logged as "secured").
    for user in (src, dst):
        lines = dc.logins(user)
        assert lines, f"no login of {user} in the Dovecot log"
        for line in lines:
            assert ", TLS," in line, f"login of {user} was not over TLS: {line}"


def test_keep_false_deletes_after_import(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)]
    deliver_all(dc, src, raws)
    cfg = t.config([dc.account("kf", src, dst, keep=False)])

    r = run_ok(t, cfg)
    assert_exactly_once(raws, dc.imap_messages(dst))
    assert dc.pop3_count(src) == 0, "keep = false but messages are still on POP3"
    assert dc.maildir_count(src) == 0, "keep = false but the source maildir is not empty"

    # Nothing left: a second run is a no-op.
    run_ok(t, cfg)
    assert dc.imap_count(dst) == len(raws)

    new, imported, failed, deleted = summary_line(r.stderr, "kf")
    assert (imported, failed, deleted) == (len(raws), 0, len(raws)), \
        f"summary says {imported} imported, {failed} failed, {deleted} deleted"


def test_flags_seen_flagged(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:3]]
    deliver_all(dc, src, raws)
    cfg = t.config([dc.account("fl", src, dst, flags=["\\Seen", "\\Flagged"])])

    run_ok(t, cfg)
    msgs = dc.imap_messages(dst)
    assert_exactly_once(raws, msgs)
    for m in msgs:
        assert m["flags"] == {"\\Seen", "\\Flagged"}, \
            f"{describe(m['body'])}: flags {sorted(m['flags'])}, expected \\Seen \\Flagged"


def test_identical_messages_both_imported(t):
    """Two POP3 messages with the same bytes (same Message-ID) are two
    messages: both arrive."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raw = varied_messages(t.name)[0][1]
    deliver_all(dc, src, [raw, raw])
    cfg = t.config([dc.account("dup", src, dst)])

    run_ok(t, cfg)
    assert_exactly_once([raw, raw], dc.imap_messages(dst))
    run_ok(t, cfg)
    assert dc.imap_count(dst) == 2, "second run imported a copy again"


def test_new_mail_between_runs(t):
    """Mail that arrives after a run is picked up by the next, and only it."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    labelled = varied_messages(t.name)
    first = [raw for _, raw in labelled[:3]]
    later = [raw for _, raw in labelled[3:]]
    deliver_all(dc, src, first)
    cfg = t.config([dc.account("inc", src, dst)])
    run_ok(t, cfg)
    deliver_all(dc, src, later)
    r = run_ok(t, cfg)
    assert_exactly_once(first + later, dc.imap_messages(dst))
    assert summary_line(r.stderr, "inc")[1] == len(later), \
        f"second run's summary should count the {len(later)} new messages as imported"


def test_other_mailbox(t):
    """mailbox = "Archive" (existing folder) receives the mail, INBOX stays empty."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    c = dc.imap(dst)
    try:
        typ, data = c.create("Archive")
        assert typ == "OK", f"could not create Archive: {data}"
    finally:
        c.logout()
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    deliver_all(dc, src, raws)
    cfg = t.config([dc.account("arc", src, dst, mailbox="Archive")])

    run_ok(t, cfg)
    assert_exactly_once(raws, dc.imap_messages(dst, "Archive"), "Archive")
    assert dc.imap_count(dst) == 0, "mail went to INBOX instead of Archive"


def test_no_date_no_received_uses_fetch_time(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raw = (f"From: nodate@example.org\nSubject: [{t.name}] neither Date nor Received\n"
           f"Message-ID: <nodate.{t.name}@example.org>\n\nbody\n").encode()
    dc.deliver(src, raw)
    cfg = t.config([dc.account("nd", src, dst)])
    import datetime as dt
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=2)
    run_ok(t, cfg)
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    (m,) = dc.imap_messages(dst)
    assert_bytes_equal(raw, m["body"])
    assert before <= m["internaldate"] <= after, \
        f"INTERNALDATE {m['internaldate_raw']} is not the fetch time"


def test_date_before_1970_is_not_sent(t):
    """A Date before 1970 is bogus, and servers differ on it (Courier-IMAP
    refuses the APPEND, Dovecot stores 13-Dec-1901): popbridge sends no
    date-time for it, and the server's own time stands.  (Before: the date
    went out; Dovecot stored 1901.)"""
    import datetime as dt
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raw = (f"Date: Wed, 31 Dec 1969 23:59:59 +0000\nFrom: old@example.org\n"
           f"Subject: [{t.name}] before 1970\nMessage-ID: <old.{t.name}@example.org>\n\n"
           f"body\n").encode()
    dc.deliver(src, raw)
    cfg = t.config([dc.account("old", src, dst)])
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=2)
    run_ok(t, cfg)
    after = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    (m,) = dc.imap_messages(dst)
    assert_bytes_equal(raw, m["body"])
    assert before <= m["internaldate"] <= after, \
        f"INTERNALDATE {m['internaldate_raw']} is not the APPEND time"


def test_large_message_and_long_line(t):
    """A 3 MB message with a 200 KB line arrives byte for byte."""
    import base64
    import random
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    rng = random.Random(3)
    blob = base64.encodebytes(bytes(rng.getrandbits(8) for _ in range(2_200_000)))
    raw = (f"Date: Tue, 2 Jul 2024 08:00:00 +0000\nFrom: big@example.org\n"
           f"Subject: [{t.name}] large\nMessage-ID: <large.{t.name}@example.org>\n"
           f"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n"
           f"--b1\nContent-Type: text/plain\n\n" + "L" * 200_000 + "\n"
           f"--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
           ).encode() + blob + b"--b1--\n"
    dc.deliver(src, raw)
    cfg = t.config([dc.account("big", src, dst, keep=False)])
    run_ok(t, cfg)
    (m,) = dc.imap_messages(dst)
    assert_bytes_equal(raw, m["body"])
    assert dc.pop3_count(src) == 0


def test_run_named_account_only(t):
    dc = t.dovecot()
    s1, d1, s2, d2 = (t.user(dc, r) for r in ("s", "d", "s", "d"))
    raw = varied_messages(t.name)[0][1]
    dc.deliver(s1, raw)
    dc.deliver(s2, raw)
    cfg = t.config([dc.account("one", s1, d1), dc.account("two", s2, d2)])

    run_ok(t, cfg, "two")
    assert dc.imap_count(d2) == 1, "the named account was not run"
    assert dc.imap_count(d1) == 0, "an account that was not named was run"
    run_ok(t, cfg)
    assert dc.imap_count(d1) == 1 and dc.imap_count(d2) == 1


def test_empty_mailbox(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    cfg = t.config([dc.account("empty", src, dst, keep=False)])
    r = run_ok(t, cfg)
    assert dc.imap_count(dst) == 0
    assert summary_line(r.stderr, "empty")[:2] == (0, 0)


def test_protocol_trace_hides_passwords(t):
    """-vv traces the protocol but never shows a password."""
    import base64
    dc = t.dovecot()
    for mode, name in (("tls", "trace1"), ("starttls", "trace2")):
        src, dst = t.user(dc, "s"), t.user(dc, "d")
        dc.deliver(src, varied_messages(t.name)[1][1])
        cfg = t.config([dc.account(name, src, dst, mode=mode)], name=f"{name}.conf")
        r = t.bridge("-c", cfg, "-vv", "run")
        assert r.rc == 0, f"exit {r.rc}"
        for user in (src, dst):
            pw = dc.users[user]
            forms = [pw, base64.b64encode(pw.encode()).decode(),
                     base64.b64encode(f"\0{user}\0{pw}".encode()).decode(),
                     base64.b64encode(f"{user}\0{user}\0{pw}".encode()).decode()]
            leaked = [f for f in forms if f in r.output]
            assert not leaked, f"-vv output ({mode}) shows the password of {user}: {leaked[0]!r}"
        assert dc.imap_count(dst) == 1, f"-vv run ({mode}) did not import the message"
