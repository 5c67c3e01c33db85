"""`popbridge batch` (and, last, the daemon) against a server that
throttles (issue 5): "Throttling
replies (NO [LIMIT], NO ... throttled, BYE with a backoff hint, too many
connections) slow that host down and retry; they are not failures."

The mail is in the private Dovecot; in front of it, a relay on 127.0.0.1
(tests/throttlelib.py, TLS with the test CA's certificate) answers some
connections like a throttling provider and relays the others.  Every
outcome is read back from Dovecot: each account's IMAP INBOX over IMAP
(every message exactly once, bytes as normalised), its POP3 mailbox over
POP3; plus the --report CSV, the exit status, the log, and the relay's
connection times for the waits.
"""

import random
import re

from batchlib import (EX_OK, EX_TEMPFAIL, assert_no_secrets, imap_counts,
                      make_accounts, pop3_counts, read_report, run_batch,
                      verify_imported, write_csv)
from daemonlib import Daemon, wait_mail
from harness import assert_exactly_once, make_account, small_message
from throttlelib import Refuse, ThrottleRelay

THROTTLE_TRIES = 6      # attempts of a throttled account (bridge/batch.c)
SLACK = 0.05            # clock reading granularity between two processes


def check_no_secrets(accts, report, r):
    """No account's password in the report, on stdout or on stderr."""
    secrets = [s for a in accts for s in (a.pop3_pw, a.imap_pw)]
    assert_no_secrets(secrets, [("report", report.read_text()),
                                ("stdout", r.stdout), ("stderr", r.stderr)])


def args_for(t, dc, report, *more):
    return ("--report", report, "--state-dir", t.tmp / "state",
            "--ca-file", dc.ca_file, *more)


def check_report_ok(report, accts):
    rows = {r["line"]: r for r in read_report(report)}
    bad = []
    for a in accts:
        r = rows.get(str(a.line))
        if r is None or (r["status"], r["imported"], r["error"]) != \
                ("ok", str(len(a.raws)), ""):
            bad.append(f"line {a.line} ({a.src}): {r}")
    assert len(rows) == len(accts) and not bad, (
        f"report: {len(rows)} rows for {len(accts)} accounts; not ok: {bad[:3]}")


def throttled_names(stderr, host):
    """Account names the log says were throttled by host, in order."""
    return re.findall(rf"popbridge: (\S+): throttled by {re.escape(host)}; ", stderr)


def waits(relay, accts, hint):
    """For every refused connection whose account is known: the time from
    the refusal to that account's next connection to the relay, which must
    be at least `hint` seconds."""
    out = []
    conns = sorted(relay.conns, key=lambda c: c.t)
    for c in conns:
        if c.refused_at is None or c.user is None:
            continue
        later = [d for d in conns if d.t > c.refused_at and d.user == c.user]
        assert later, f"{c.user}: refused at {c.refused_at:.2f}, never came back"
        out.append((c.user, later[0].t - c.refused_at))
    short = [(u, round(w, 2)) for u, w in out if w < hint - SLACK]
    assert not short, f"retried sooner than the server's hint of {hint} s: {short}"
    return out


# ----------------------------------------------------------------- 1
def test_throttle_bye_greeting_hint_other_host_not_slowed(t):
    """The IMAP server of two accounts turns the first connection away in
    its greeting: `* BYE [UNAVAILABLE] Too many connections, try again in 2
    seconds`.  Three other accounts use another server (host name
    localhost, through a relay that never throttles).  --jobs 1, so the
    order is known: exit 0; every message in its INBOX exactly once, POP3
    empty; every report row ok; the log says the account was throttled by
    127.0.0.1 and that the server asked for 2 s, with its words; the
    throttled host saw no connection for 2 s after the BYE (the retry came
    at least 2 s later), while the other host's accounts ran in that time."""
    dc = t.dovecot()
    bye = b"* BYE [UNAVAILABLE] Too many connections, try again in 2 seconds"
    slow = ThrottleRelay(dc, "imap", [Refuse("greeting", bye)], name="slow").start()
    fast = ThrottleRelay(dc, "imap", name="fast").start()
    try:
        accts = make_accounts(t, dc, 5, 4, "g")
        a_slow, b_fast = accts[:2], accts[2:]
        rows = [a.row(dc, imap_url=slow.url("127.0.0.1")) for a in a_slow] + \
               [a.row(dc, imap_url=fast.url("localhost")) for a in b_fast]
        csv_path = write_csv(t.tmp / "accounts.csv", rows, accounts=accts)
        report = t.tmp / "report.csv"
        r = run_batch(t, csv_path, "--jobs", 1, *args_for(t, dc, report))
        t.note(f"batch took {r.seconds:.1f}s")
        assert r.rc == EX_OK, f"exit {r.rc}, want 0"
        verify_imported(dc, accts)
        check_report_ok(report, accts)
        names = throttled_names(r.stderr, "127.0.0.1")
        assert len(names) == 1, f"throttled by 127.0.0.1 {len(names)} times, want 1"
        assert ("throttled by 127.0.0.1; again in 2 s (server asked: imap: 127.0.0.1: "
                "the server ended the session: [UNAVAILABLE] Too many connections, "
                "try again in 2 seconds)") in r.stderr, "the log does not give the hint"
        assert "throttled by localhost" not in r.stderr

        refused = slow.refused()
        assert len(refused) == 1, f"slow relay refused {len(refused)} connections"
        t_bye = refused[0].refused_at
        # Which account it was: the log names it; its IMAP user comes back.
        who = next(a for a in a_slow if names[0] == f"{a.src}@localhost")
        back = [c for c in slow.relayed() if c.user == who.dst]
        assert back, f"{who.dst} never came back to the throttled server"
        wait = back[0].t - t_bye
        early = [round(c.t - t_bye, 2) for c in slow.conns
                 if c.t > t_bye and c.t - t_bye < 2 - SLACK]
        t.note(f"retry {wait:.2f}s after the BYE (asked: 2 s)")
        assert wait >= 2 - SLACK, f"retried {wait:.2f}s after the BYE, asked for 2 s"
        assert not early, f"connections to the resting host after {early} s"
        fast_times = sorted(c.t - t_bye for c in fast.conns)
        assert len(fast.relayed()) == 3 and fast_times[0] < 2, (
            f"the other host's accounts waited for the throttled one's rest: their "
            f"connections came {[round(x, 2) for x in fast_times]} s after the BYE")
        check_no_secrets(accts, report, r)
    finally:
        slow.stop()
        fast.stop()


# ----------------------------------------------------------------- 2
def test_throttle_no_limit_and_bye_at_login(t):
    """The login refused twice, as providers do: `NO [LIMIT] Too many
    simultaneous logins, retry after 1 s` to one AUTHENTICATE, `* BYE
    [UNAVAILABLE] Throttled: too many logins, try again in 1 second` (and the
    connection closed) to another.  Three accounts, --jobs 4: exit 0, every
    message exactly once, every row ok, no account taken for a wrong
    password; each refused account logged in again at least 1 s after its
    refusal, and the log gives the server's words and the 1 s it asked."""
    dc = t.dovecot()
    no = b"{tag} NO [LIMIT] Too many simultaneous logins, retry after 1 s"
    bye = b"* BYE [UNAVAILABLE] Throttled: too many logins, try again in 1 second"
    relay = ThrottleRelay(dc, "imap", [Refuse("login", no),
                                       Refuse("login", bye, close=True)]).start()
    try:
        accts = make_accounts(t, dc, 3, 5, "l")
        rows = [a.row(dc, imap_url=relay.url()) for a in accts]
        csv_path = write_csv(t.tmp / "accounts.csv", rows, accounts=accts)
        report = t.tmp / "report.csv"
        r = run_batch(t, csv_path, "--jobs", 4, *args_for(t, dc, report))
        t.note(f"batch took {r.seconds:.1f}s")
        assert r.rc == EX_OK, f"exit {r.rc}, want 0"
        verify_imported(dc, accts)
        check_report_ok(report, accts)
        assert len(relay.refused()) == 2, f"{len(relay.refused())} logins refused, want 2"
        assert len(throttled_names(r.stderr, "127.0.0.1")) == 2, "the log: not 2 throttles"
        assert re.search(r"again in 1 s \(server asked: imap: 127\.0\.0\.1 cannot take "
                         r"the login for \S+ now: \S+ NO \[LIMIT\] Too many simultaneous "
                         r"logins, retry after 1 s\)", r.stderr), "the NO [LIMIT] is not logged"
        assert ("again in 1 s (server asked: imap: 127.0.0.1: the server ended the "
                "session: [UNAVAILABLE] Throttled: too many logins, try again in 1 "
                "second)") in r.stderr, "the BYE during the login is not logged"
        assert "refused the login" not in r.stderr
        w = waits(relay, accts, 1)
        t.note("retries after " + ", ".join(f"{x:.2f}s" for _, x in w))
        check_no_secrets(accts, report, r)
    finally:
        relay.stop()


# ----------------------------------------------------------------- 3
def test_throttle_mid_session_select_and_append(t):
    """Throttling after the login: `NO [LIMIT] ... try again in 1 second` to
    the first look at the mailbox (STATUS), then `* BYE [UNAVAILABLE] Server busy, try again in 1
    second` to the first APPEND (a batch of messages in flight, none of it
    reaching Dovecot).  Two accounts of 12 messages, keep=false: exit 0, every
    message exactly once (the interrupted APPEND's messages settled and sent
    again), POP3 empty, every row ok; no mailbox was created for the NO; the
    log gives both replies whole, response codes included."""
    dc = t.dovecot()
    relay = ThrottleRelay(dc, "imap", [
        Refuse("select", b"{tag} NO [LIMIT] Too many open mailboxes, try again in 1 second"),
        Refuse("append", b"* BYE [UNAVAILABLE] Server busy, try again in 1 second"),
    ]).start()
    try:
        accts = make_accounts(t, dc, 2, 12, "m")
        rows = [a.row(dc, imap_url=relay.url()) for a in accts]
        csv_path = write_csv(t.tmp / "accounts.csv", rows, accounts=accts)
        report = t.tmp / "report.csv"
        r = run_batch(t, csv_path, "--jobs", 2, *args_for(t, dc, report))
        t.note(f"batch took {r.seconds:.1f}s")
        assert r.rc == EX_OK, f"exit {r.rc}, want 0"
        verify_imported(dc, accts)
        check_report_ok(report, accts)
        steps = sorted(c.what for c in relay.refused())
        assert steps == ["append", "select"], f"refusals: {steps}"
        assert "STATUS refused: [LIMIT] Too many open mailboxes, try again in 1 second" \
            in r.stderr, "the NO [LIMIT] to STATUS is not in the log"
        assert "the server ended the session: [UNAVAILABLE] Server busy, try again in " \
            "1 second" in r.stderr, "the BYE's words are not in the log"
        assert len(throttled_names(r.stderr, "127.0.0.1")) == 2
        assert "created mailbox" not in r.stderr, "a NO [LIMIT] to STATUS created INBOX"
        assert re.search(r"settled 12 interrupted imports: 0 already in INBOX", r.stderr), \
            "the APPEND cut by BYE left no intents to settle"
        waits(relay, accts, 1)
    finally:
        relay.stop()


# ----------------------------------------------------------------- 4
def test_throttle_pop3_err_greeting_auth_and_pass(t):
    """POP3 throttling: `-ERR [IN-USE] too many connections, try again in 1
    second` as the greeting, `-ERR [SYS/TEMP] throttled, try again in 1
    second` to AUTH, and (a server without SASL, so USER/PASS) `-ERR too many
    connections from your address, try again in 1 second` to PASS: exit 0,
    every message exactly once, every row ok, each refusal in the log as a
    throttle with the server's words; --jobs 1, so no connection reached a
    POP3 server within 1 s after it refused one."""
    dc = t.dovecot()
    sasl = ThrottleRelay(dc, "pop3", [
        Refuse("greeting", b"-ERR [IN-USE] too many connections, try again in 1 second"),
        Refuse("login", b"-ERR [SYS/TEMP] throttled, try again in 1 second"),
    ], name="sasl").start()
    old = ThrottleRelay(dc, "pop3", [
        Refuse("login", b"-ERR too many connections from your address, "
                        b"try again in 1 second"),
    ], name="userpass", no_sasl=True).start()
    try:
        accts = make_accounts(t, dc, 3, 4, "p")
        rows = [a.row(dc, pop3_url=sasl.url("127.0.0.1")) for a in accts[:2]] + \
               [accts[2].row(dc, pop3_url=old.url("localhost"))]
        csv_path = write_csv(t.tmp / "accounts.csv", rows, accounts=accts)
        report = t.tmp / "report.csv"
        r = run_batch(t, csv_path, "--jobs", 1, *args_for(t, dc, report))
        t.note(f"batch took {r.seconds:.1f}s")
        assert r.rc == EX_OK, f"exit {r.rc}, want 0"
        verify_imported(dc, accts)
        check_report_ok(report, accts)
        for words in ("the server turned the connection away: [IN-USE] too many "
                      "connections, try again in 1 second",
                      "now: -ERR [SYS/TEMP] throttled, try again in 1 second",
                      "now: -ERR too many connections from your address, try again "
                      "in 1 second"):
            assert re.search(r"throttled by \S+; again in 1 s \(server asked: pop3: .*"
                             + re.escape(words), r.stderr), f"not logged as a throttle: {words}"
        assert [c.what for c in sasl.refused()] == ["greeting", "login"]
        assert [c.what for c in old.refused()] == ["login"]
        assert old.refused()[0].user == accts[2].src, "USER was not sent before PASS"
        for relay in (sasl, old):
            for c in relay.refused():
                early = [round(d.t - c.refused_at, 2) for d in relay.conns
                         if d.t > c.refused_at and d.t - c.refused_at < 1 - SLACK]
                assert not early, (f"{relay.name}: connections {early} s after a "
                                   f"refusal asking for 1 s")
        check_no_secrets(accts, report, r)
    finally:
        sasl.stop()
        old.stop()


# ----------------------------------------------------------------- 5
def test_throttle_never_ends_then_rerun(t):
    """A server that throttles every connection (`* BYE [UNAVAILABLE] Too many
    connections, try again in 1 second`, forever) beside a good one: the
    throttled account is tried THROTTLE_TRIES times, then ends `failed` with
    the server's words (exit 75), its mail still on POP3 and none in IMAP;
    the other account is ok.  Once the relay relays, a rerun with
    --retry-failed imports it: exit 0, every message exactly once, POP3
    empty."""
    dc = t.dovecot()
    bye = b"* BYE [UNAVAILABLE] Too many connections, try again in 1 second"
    relay = ThrottleRelay(dc, "imap", then=Refuse("greeting", bye)).start()
    try:
        accts = make_accounts(t, dc, 2, 6, "n")
        stuck, good = accts
        rows = [stuck.row(dc, imap_url=relay.url()), good.row(dc)]
        csv_path = write_csv(t.tmp / "accounts.csv", rows, accounts=accts)
        report = t.tmp / "report.csv"
        r = run_batch(t, csv_path, "--jobs", 2, *args_for(t, dc, report))
        t.note(f"first run took {r.seconds:.1f}s")
        assert r.rc == EX_TEMPFAIL, f"exit {r.rc}, want 75"
        rep = {x["line"]: x for x in read_report(report)}
        s = rep[str(stuck.line)]
        assert s["status"] == "failed" and "Too many connections, try again in 1 second" \
            in s["error"], f"the throttled account's row: {s}"
        assert rep[str(good.line)]["status"] == "ok", rep[str(good.line)]
        assert len(relay.refused()) == THROTTLE_TRIES, (
            f"{len(relay.refused())} attempts, want {THROTTLE_TRIES}")
        assert len(throttled_names(r.stderr, "127.0.0.1")) == THROTTLE_TRIES - 1
        assert pop3_counts(dc, [stuck])[stuck.idx] == 6, "mail left POP3 unimported"
        assert imap_counts(dc, [stuck])[stuck.idx] in (0, None)
        verify_imported(dc, [good])
        times = sorted(c.refused_at for c in relay.refused())
        gaps = [round(b - a, 2) for a, b in zip(times, times[1:])]
        t.note(f"gaps between attempts: {gaps}")
        assert min(gaps) >= 1 - SLACK, f"attempts closer than the hint of 1 s: {gaps}"

        relay.heal()
        r = run_batch(t, csv_path, "--jobs", 2, "--retry-failed", *args_for(t, dc, report))
        assert r.rc == EX_OK, f"rerun exit {r.rc}, want 0"
        check_report_ok(report, [stuck])
        verify_imported(dc, accts)
        check_no_secrets(accts, report, r)
    finally:
        relay.stop()


# ----------------------------------------------------------------- 6
def test_daemon_waits_as_long_as_the_server_asks(t):
    """The household daemon, not only batch: the IMAP server turns the first
    poll away with `* BYE [UNAVAILABLE] ... try again in 5 minutes`.  With
    interval = 60 the first failure would mean a retry after 2 minutes; the
    daemon waits the 300 s the server asked and says so.  SIGUSR1 (poll
    now) still polls at once, and then every message arrives exactly once
    and the POP3 mailbox is emptied."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    rng = random.Random(6)
    raws = [small_message(i, rng, t.name) for i in range(5)]
    for raw in raws:
        dc.deliver(src, raw)
    bye = b"* BYE [UNAVAILABLE] Too busy, try again in 5 minutes"
    relay = ThrottleRelay(dc, "imap", [Refuse("greeting", bye)], name="busy").start()
    try:
        acct = make_account("busy", dc.pop3_block(src),
                            dc.imap_block(dst, url=relay.url("127.0.0.1")), keep=False)
        cfg = t.config([acct], extra="interval = 60;\n")
        with Daemon(t, cfg) as d:
            line = d.wait_line(lambda line: "busy: next poll in" in line, 15,
                               "the daemon's next poll after the refused one")
            t.note(line.strip())
            assert re.search(r"busy: next poll in 300 s \(failure 1 in a row, as the "
                             r"server asked\)", line), f"not the 300 s asked for: {line!r}"
            assert dc.imap_count(dst) == 0 and len(relay.refused()) == 1
            d.poll_now()
            wait_mail(d, dc, dst, len(raws), 15, "the mail after SIGUSR1")
        assert_exactly_once(raws, dc.imap_messages(dst))
        assert dc.pop3_count(src) == 0
    finally:
        relay.stop()
