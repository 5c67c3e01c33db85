"""notify_command (issue 13): a person hears when an account's failures
last and when it works again, once each, from `run` under cron and from
the daemon.

The command here appends its whole environment to a file, one record per
call.  The account's POP3 server is first a closed port on 127.0.0.1 (the
account fails, a temporary failure), then the private Dovecot (it works):
the ledger, keyed by the POP3 mailbox user@host and not by the port, is
the same throughout.  Failing means 3 failed polls in a row (or 30
minutes, or one refused login): the first two failures say nothing.
"""

import re

from daemonlib import EX_TEMPFAIL, Daemon
from harness import free_ports, make_account
from secretlib import assert_no_secrets

FIRST_POLL = 10     # s
NOW = 15            # s from SIGUSR1 to the end of a poll
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def recorder(t):
    """The notify_command and the file it appends its environment to."""
    out = t.tmp / "notified.txt"
    return f"{{ echo '=== notify'; env; }} >> '{out}'", out


def records(path):
    """[{VAR: value}] of the POPBRIDGE_ variables of each call."""
    if not path.exists():
        return []
    recs = []
    for chunk in path.read_text().split("=== notify\n")[1:]:
        rec = {}
        for line in chunk.splitlines():
            k, sep, v = line.partition("=")
            if sep and k.startswith("POPBRIDGE_"):
                rec[k] = v
        recs.append(rec)
    return recs


def accounts(dc, src, dst, up):
    """The account 'flaky': its POP3 server down (a closed port) or up."""
    pop3 = dc.pop3_block(src)
    if not up:
        (port,) = free_ports(1)
        pop3["url"] = f"pop3s://{dc.host}:{port}"
    return [make_account("flaky", pop3, dc.imap_block(dst))]


def secrets_of(dc, src, dst):
    return [(dc.users[src], src), (dc.users[dst], dst)]


def check_records(recs, t, path, dc, src, dst):
    states = [r.get("POPBRIDGE_STATE") for r in recs]
    assert states == ["failing", "recovered"], \
        f"notify_command was called {len(recs)} times with states {states}, expected " \
        f"['failing', 'recovered'] (once per change): {recs}"
    failing, recovered = recs
    for r in recs:
        assert r.get("POPBRIDGE_ACCOUNT") == "flaky", f"POPBRIDGE_ACCOUNT: {r}"
        for k in ("POPBRIDGE_SINCE", "POPBRIDGE_TIME"):
            assert ISO.match(r.get(k, "")), f"{k} is not an ISO 8601 UTC time: {r}"
        assert re.search(r"connect|refused", r.get("POPBRIDGE_CAUSE", ""), re.I), \
            f"POPBRIDGE_CAUSE does not say the server could not be reached: {r}"
        assert r["POPBRIDGE_SINCE"] <= r["POPBRIDGE_TIME"], f"since after time: {r}"
    assert failing.get("POPBRIDGE_RESULT") == "temporary failure", failing
    assert failing.get("POPBRIDGE_FAILURES") == "3", \
        f"failing after {failing.get('POPBRIDGE_FAILURES')} failed polls, expected 3"
    assert recovered.get("POPBRIDGE_RESULT") == "ok", recovered
    assert recovered["POPBRIDGE_SINCE"] == failing["POPBRIDGE_SINCE"], \
        f"recovered names another start of the failures: {recs}"
    assert_no_secrets(path.read_text(), secrets_of(dc, src, dst), "the notify_command's environment")


def test_notify_failing_and_recovered_under_cron(t):
    """`run` as cron runs it: two failed runs say nothing, the third runs
    notify_command once with POPBRIDGE_STATE=failing, the account, the
    cause and since when; more failures say nothing; the first run that
    works says "recovered", once.  Before the fix: notify_command was an
    unknown key (exit 78), and nobody heard of an account that had
    stopped working."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    cmd, out = recorder(t)
    extra = "notify_command = " + _quoted(cmd) + ";\n"
    cfg = t.config(accounts(dc, src, dst, up=False), extra=extra)
    for i in range(4):
        r = t.bridge("-c", cfg, "run")
        assert r.rc == EX_TEMPFAIL, f"run {i + 1} with the POP3 server down: exit {r.rc}"
        want = 0 if i < 2 else 1
        assert len(records(out)) == want, \
            f"after {i + 1} failed runs notify_command ran {len(records(out))} times, " \
            f"expected {want}"
    t.config(accounts(dc, src, dst, up=True), extra=extra)
    for i in range(2):
        r = t.bridge("-c", cfg, "run")
        assert r.rc == 0, f"run with the POP3 server up: exit {r.rc}"
        assert len(records(out)) == 2, \
            f"after {i + 1} good runs notify_command ran {len(records(out))} times in all, " \
            f"expected 2"
    check_records(records(out), t, out, dc, src, dst)


def test_notify_from_the_daemon(t):
    """The daemon, its POP3 server down for three polls (SIGUSR1), then
    the config pointed at the private Dovecot (SIGHUP) and one more poll:
    one "failing" and one "recovered" record, as under cron.  Before the
    fix: notify_command was an unknown key and the daemon did not start."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    cmd, out = recorder(t)
    extra = "interval = 3600;\nnotify_command = " + _quoted(cmd) + ";\n"
    cfg = t.config(accounts(dc, src, dst, up=False), extra=extra)
    with Daemon(t, cfg) as d:
        d.wait_polls("flaky", 1, FIRST_POLL, what="the first poll of 'flaky'")
        for n in (2, 3, 4):
            d.poll_now()
            d.wait_polls("flaky", n, NOW, what=f"poll number {n} of 'flaky' (server down)")
        assert [r.get("POPBRIDGE_STATE") for r in records(out)] == ["failing"], records(out)
        mark = d.mark()
        t.config(accounts(dc, src, dst, up=True), extra=extra)
        d.reload()
        d.wait_line(lambda line: "config reloaded" in line, NOW, "the reload", since=mark)
        d.poll_now()
        d.wait_polls("flaky", 1, NOW, since=mark, what="a poll after the server is up")
        d.poll_now()
        d.wait_polls("flaky", 2, NOW, since=mark, what="a second poll after the server is up")
        log = d.log()
    assert re.search(r"flaky: notify_command \(failing\) exited 0", log), log[-2000:]
    check_records(records(out), t, out, dc, src, dst)


def test_notify_command_per_account(t):
    """An account's own notify_command overrides the top-level one, ""
    turns it off, and a command's exit status is logged (a warning when it
    is not 0).  Before the fix: notify_command was an unknown key."""
    dc = t.dovecot()
    users = [(t.user(dc, "s"), t.user(dc, "d")) for _ in range(3)]
    cmd, out = recorder(t)
    inherited = t.tmp / "inherited.txt"
    own, off, inherit = (accounts(dc, s, d, up=False)[0] for s, d in users)
    own["notify_command"] = cmd
    off["name"], off["notify_command"] = "off", ""
    inherit["name"] = "inherit"
    top = f"echo $POPBRIDGE_ACCOUNT >> '{inherited}'; exit 3"
    cfg = t.config([own, off, inherit], extra="notify_command = " + _quoted(top) + ";\n")
    for _ in range(3):
        r = t.bridge("-c", cfg, "run")
        assert r.rc == EX_TEMPFAIL, r.stderr
    recs = records(out)
    assert [x.get("POPBRIDGE_ACCOUNT") for x in recs] == ["flaky"], \
        f"the own command's records name {[x.get('POPBRIDGE_ACCOUNT') for x in recs]}, " \
        f"expected ['flaky']"
    got = inherited.read_text().split() if inherited.exists() else []
    assert got == ["inherit"], f"the top-level command ran for {got}, expected ['inherit'] " \
        f"('off' has notify_command = \"\", 'flaky' its own)"
    assert re.search(r"inherit: notify_command \(failing\) exited 3", r.stderr), r.stderr
    assert "off: failing" not in r.stderr and "off: notify_command" not in r.stderr, r.stderr


def _quoted(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
