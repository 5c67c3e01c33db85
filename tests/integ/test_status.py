"""`popbridge status [--json] [ACCOUNT...]`: what the ledger says, with and
without a running daemon, checked against what the IMAP mailbox shows."""

import datetime as dt
import random
import re

from daemonlib import (EX_USAGE, Daemon, parse_time, status_json, utcnow, wait_mail,
                       wait_mid_import)
from harness import free_ports, make_account, normalise, small_message

SLACK = dt.timedelta(seconds=3)


def big_message(tag, size):
    head = (f"Date: Mon, 1 Jul 2024 12:00:00 +0000\n"
            f"From: big@example.org\n"
            f"Subject: [{tag}] a big one of {size} bytes\n"
            f"Message-ID: <big.{size}.{tag}@example.org>\n\n")
    line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n"
    return (head + line * (size // len(line))).encode()


def dead_account(name):
    """An account whose servers do not exist: status must not need them."""
    (port,) = free_ports(1)
    return make_account(name,
                        {"url": f"pop3s://localhost:{port}", "user": f"nobody-{name}",
                         "password": "pw-pop3-dummy"},
                        {"url": f"imaps://localhost:{port}", "user": f"nobody-{name}",
                         "password": "pw-imap-dummy", "mailbox": "INBOX"})


def test_status_json_counts_after_run_with_refused_message(t):
    # Dovecot refuses the 150 KB APPEND with NO [LIMIT] (quota_max_mail_size).
    dc = t.dovecot(quota_max_mail_size="100K")
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    rng = random.Random(10)
    small = [small_message(i, rng, t.name) for i in range(6)]
    big = big_message(t.name, 150_000)
    for raw in small[:3] + [big] + small[3:]:
        dc.deliver(src, raw)
    cfg = t.config([dc.account("counted", src, dst)])

    before = utcnow() - SLACK
    r = t.bridge("-c", cfg, "-v", "run")
    after = utcnow() + SLACK
    assert r.rc != 0, "a message was refused but popbridge run exited 0"
    in_imap = dc.imap_count(dst)
    assert in_imap == len(small), f"{in_imap} messages in IMAP, expected {len(small)}"
    big_uidl = [u for u, body in dc.pop3_messages(src) if body == normalise(big)]
    assert len(big_uidl) == 1

    st = status_json(t, cfg)
    assert set(st) == {"counted"}, f"status --json lists {sorted(st)}, expected ['counted']"
    a = st["counted"]
    assert a["imported_total"] == in_imap, \
        f"imported_total = {a['imported_total']}, the IMAP mailbox has {in_imap}"
    assert a["imported_last_run"] == in_imap, \
        f"imported_last_run = {a['imported_last_run']}, expected {in_imap}"
    assert a["failed"] == 1, f"failed = {a['failed']}, expected 1 (the refused big message)"
    assert len(a["failures"]) == 1, f"failures has {len(a['failures'])} entries, expected 1"
    fail = a["failures"][0]
    assert fail["uidl"] == big_uidl[0], \
        f"failures[0].uidl = {fail['uidl']!r}, the refused message is {big_uidl[0]!r}"
    assert fail["error"].strip(), "failures[0].error is empty"
    assert re.search(r"LIMIT|larger|size", fail["error"], re.I), \
        f"failures[0].error does not carry the server's reason: {fail['error']!r}"
    assert a["on_server"] == len(small) + 1, \
        f"on_server = {a['on_server']}, the POP3 mailbox has {len(small) + 1} (keep = true)"
    assert a["last_result"] == "failed messages", \
        f"last_result = {a['last_result']!r}, expected 'failed messages'"
    assert a["daemon"] is False, "daemon = true but no daemon runs"
    assert a["next_poll"] is None, f"next_poll = {a['next_poll']!r} without a daemon, expected null"
    last = parse_time(a["last_poll"], "last_poll")
    assert before <= last <= after, \
        f"last_poll = {a['last_poll']}, the run was between {before:%H:%M:%S} and {after:%H:%M:%S} UTC"

    # One more message and another run: last run and total part ways.
    extra = small_message(99, rng, t.name)
    dc.deliver(src, extra)
    t.bridge("-c", cfg, "-v", "run")
    a = status_json(t, cfg, "counted")["counted"]
    in_imap = dc.imap_count(dst)
    assert in_imap == len(small) + 1
    assert a["imported_last_run"] == 1, f"imported_last_run = {a['imported_last_run']}, expected 1"
    assert a["imported_total"] == in_imap, \
        f"imported_total = {a['imported_total']}, the IMAP mailbox has {in_imap}"
    assert a["failed"] == 1 and len(a["failures"]) == 1, \
        f"after a second refusal: failed = {a['failed']}, {len(a['failures'])} failures, expected 1"
    assert a["on_server"] == len(small) + 2, f"on_server = {a['on_server']}, expected {len(small) + 2}"
    assert a["last_result"] == "failed messages", f"last_result = {a['last_result']!r}"


def test_status_while_daemon_runs(t):
    dc = t.dovecot()
    s1, d1, s2, d2 = (t.user(dc, r) for r in ("s", "d", "s", "d"))
    rng = random.Random(11)
    total = 600
    for i in range(total):
        dc.deliver(s1, small_message(i, rng, t.name))
    dc.deliver(s2, small_message(total, rng, t.name))
    cfg = t.config([dc.account("hausmail", s1, d1, keep=False),
                    dc.account("vereinspost", s2, d2, interval=7200)],
                   extra="interval = 3600;\n")

    with Daemon(t, cfg) as d:
        wait_mid_import(d, dc, d1, total)
        mid = status_json(t, cfg, timeout=20)          # while the daemon writes the ledger
        assert mid["hausmail"]["daemon"] is True, "status during the daemon's import: daemon = false"
        wait_mail(d, dc, d1, total, 60, "the daemon's import of hausmail")
        d.wait_polls("hausmail", 1, 30, what="the summary of hausmail's first poll")
        d.wait_polls("vereinspost", 1, 10, what="the summary of vereinspost's first poll")
        now = utcnow()
        st = status_json(t, cfg)
        text = t.bridge("-c", cfg, "status")

    assert set(st) == {"hausmail", "vereinspost"}, f"status --json lists {sorted(st)}"
    for name, interval, count in (("hausmail", 3600, total), ("vereinspost", 7200, 1)):
        a = st[name]
        assert a["daemon"] is True, f"{name}: daemon = false while the daemon runs"
        assert a["next_poll"] is not None, f"{name}: next_poll is null while the daemon runs"
        nxt = parse_time(a["next_poll"], f"{name}.next_poll")
        # interval, less at most 5% jitter, from a poll that ended just now.
        low = now + dt.timedelta(seconds=interval * 0.95 - 90)
        high = now + dt.timedelta(seconds=interval + 60)
        assert low <= nxt <= high, (f"{name}: next_poll = {a['next_poll']}, expected about "
                                    f"{interval} s after now ({now:%H:%M:%S} UTC)")
        assert a["last_poll"] is not None, f"{name}: last_poll is null after a poll"
        assert parse_time(a["last_poll"]) <= now + SLACK, f"{name}: last_poll in the future"
        assert a["last_result"] == "ok", f"{name}: last_result = {a['last_result']!r}, expected 'ok'"
        assert a["imported_total"] == count == dc.imap_count(d1 if name == "hausmail" else d2), \
            f"{name}: imported_total = {a['imported_total']}, the IMAP mailbox has {count}"
        assert a["failed"] == 0 and a["failures"] == [], f"{name}: failures reported"
    assert text.rc == 0, f"status (text) exited {text.rc} while the daemon runs, expected 0"
    for name in ("hausmail", "vereinspost"):
        assert name in text.stdout, f"status (text) does not name the account {name!r}"


def test_status_account_never_polled(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, small_message(1, random.Random(12), t.name))
    cfg = t.config([dead_account("neverpolled"), dc.account("polledonce", src, dst)])
    r = t.bridge("-c", cfg, "run", "polledonce")
    assert r.rc == 0, f"popbridge run polledonce: exit {r.rc}"

    st = status_json(t, cfg)
    assert set(st) == {"neverpolled", "polledonce"}, f"status --json lists {sorted(st)}"
    n = st["neverpolled"]
    assert n["last_poll"] is None, f"never polled, yet last_poll = {n['last_poll']!r}"
    assert n["last_result"] is None, f"never polled, yet last_result = {n['last_result']!r}"
    assert n["last_error"] is None, f"never polled, yet last_error = {n['last_error']!r}"
    assert (n["imported_total"], n["imported_last_run"], n["failed"], n["failures"]) == (0, 0, 0, []), \
        "never polled, yet counts are not zero"
    assert n["daemon"] is False and n["next_poll"] is None, "no daemon, yet daemon/next_poll set"
    p = st["polledonce"]
    assert p["last_poll"] is not None and p["last_result"] == "ok", \
        f"polledonce: last_poll = {p['last_poll']!r}, last_result = {p['last_result']!r}"
    assert p["imported_total"] == 1 == dc.imap_count(dst)

    only = status_json(t, cfg, "neverpolled")
    assert set(only) == {"neverpolled"}, f"status --json neverpolled lists {sorted(only)}"
    text = t.bridge("-c", cfg, "status")
    assert text.rc == 0, f"status (text) exited {text.rc}, expected 0"
    assert "neverpolled" in text.stdout and "polledonce" in text.stdout, \
        "status (text) does not name both accounts"


def test_status_unknown_account(t):
    t.state_dir.mkdir(exist_ok=True)
    cfg = t.config([dead_account("known")])
    r = t.bridge("-c", cfg, "status", "known")
    assert r.rc == 0, f"status known: exit {r.rc}, expected 0 (status must work before exit 64 means anything)"
    for args in (("status", "nosuchacct"), ("status", "--json", "nosuchacct")):
        r = t.bridge("-c", cfg, *args)
        assert r.rc == EX_USAGE, f"{' '.join(args)}: exit {r.rc}, expected {EX_USAGE}"
        assert "nosuchacct" in r.stderr, f"{' '.join(args)}: the error does not name the account"


def test_status_fails_when_the_last_poll_failed(t):
    """A monitoring script or a systemd timer must see a failing account:
    `status` exits with the class of the worst last poll (75 for a server
    that cannot be reached), text and JSON alike, and 0 again once it
    works.  Before the fix: status exited 0 whatever the last poll did."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, small_message(1, random.Random(14), t.name))
    cfg = t.config([dead_account("down"), dc.account("up", src, dst)])
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 75, f"run with a dead server: exit {r.rc}, expected 75"
    st = status_json(t, cfg)          # checks the exit status against the JSON
    assert st["down"]["last_result"] == "temporary failure"
    text = t.bridge("-c", cfg, "status")
    assert text.rc == 75, f"status (text) exited {text.rc}, expected 75"
    only = t.bridge("-c", cfg, "status", "up")
    assert only.rc == 0, f"status of the working account alone exited {only.rc}"


def test_status_corrupt_ledger(t):
    """A ledger that is not a database is an error that names it, never
    "never polled" (the account was polled; its history is unreadable).
    Before the fix: "never polled" came first, then the error."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, small_message(1, random.Random(15), t.name))
    cfg = t.config([dc.account("broken", src, dst)])
    assert t.bridge("-c", cfg, "run").rc == 0
    dbs = list(t.state_dir.glob("*.db"))
    assert len(dbs) == 1, f"ledgers: {dbs}"
    for extra in ("-wal", "-shm"):
        p = dbs[0].with_name(dbs[0].name + extra)
        if p.exists():
            p.unlink()
    dbs[0].write_bytes(b"this is not a database " * 200)
    text = t.bridge("-c", cfg, "status")
    assert text.rc == 75, f"status on a corrupt ledger exited {text.rc}, expected 75"
    assert "never polled" not in text.output, text.output
    assert re.search(r"broken: the ledger cannot be read: .*not a database", text.output), \
        text.output
    st = status_json(t, cfg)
    assert st["broken"]["ledger_error"], "status --json does not name the ledger error"
