"""`popbridge migrate POP3-URL IMAP-URL[/MAILBOX]`: a whole POP3 mailbox into
IMAP in one go, with no config file (issue 4, "Migration command").

Every outcome is read back from the private Dovecot: bytes, flags and
counts over IMAP, what is left over POP3.  Every run has its own
XDG_STATE_HOME (and HOME) under the test's temp dir; see tests/migratelib.py.
"""

import random
import re
import signal
import time

from harness import (assert_bytes_equal, assert_exactly_once,
                     expected_internaldate, free_ports, normalise,
                     small_message, varied_messages)
from migratelib import (EX_DATAERR, EX_NOPERM, EX_OK, EX_TEMPFAIL, EX_USAGE,
                        PROGRESS_RE, RESUME_RE, Migration,
                        assert_no_secret, imap_count_or_none,
                        imap_mailboxes, not_imported, run_on_pty, summary)
from relay import RateLimitRelay


def corpus(t, n, seed, tag=None):
    """The six varied messages (normalisation cases) and small ones, n in all."""
    tag = tag or t.name
    rng = random.Random(seed)
    raws = [raw for _, raw in varied_messages(tag)][:n]
    raws += [small_message(i, rng, tag) for i in range(n - len(raws))]
    return raws


def big_message(tag, size):
    head = (f"Date: Mon, 1 Jul 2024 12:00:00 +0000\n"
            f"From: big@example.org\n"
            f"Subject: [{tag}] a big one of {size} bytes\n"
            f"Message-ID: <big.{size}.{tag}@example.org>\n\n")
    line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n"
    return (head + line * (size // len(line))).encode()


def uidl_of(dc, user, raw):
    """The POP3 UIDL under which `user` has the message `raw`."""
    want = normalise(raw)
    hits = [u for u, body in dc.pop3_messages(user) if normalise(body) == want]
    assert len(hits) == 1, f"message not exactly once on POP3 ({len(hits)})"
    return hits[0]


def pop3_bodies(dc, user):
    """The POP3 messages as popbridge must store them (Dovecot serves an
    mbox From line as it was delivered)."""
    return [normalise(body) for _, body in dc.pop3_messages(user)]


# ----------------------------------------------------------------- 1
def test_migrate_delete_into_archive(t):
    """300 messages with --delete into IMAP-URL/Archive: each exactly once,
    bytes as normalised, POP3 empty, exit 0, a ledger under XDG_STATE_HOME;
    the same command again imports nothing."""
    m = Migration(t)
    raws = corpus(t, 300, 1)
    m.deliver(raws)
    assert imap_count_or_none(m.dc, m.dst, "Archive") is None, "Archive exists before the run"

    r = m.run("--delete", mailbox="Archive")
    assert r.rc == EX_OK, f"migrate exited {r.rc}, expected 0"
    msgs = m.dc.imap_messages(m.dst, "Archive")
    assert_exactly_once(raws, msgs, "Archive")
    by_body = {x["body"]: x for x in msgs}
    for raw in raws:
        assert_bytes_equal(raw, by_body[normalise(raw)]["body"])
    for raw in raws[:6]:                       # the varied ones have dates
        got = by_body[normalise(raw)]
        want = expected_internaldate(raw)
        assert got["internaldate"] == want, \
            f"INTERNALDATE {got['internaldate_raw']} is not the message's date {want}"
    assert m.dc.imap_count(m.dst) == 0, "mail went to INBOX instead of Archive"
    assert m.dc.pop3_count(m.src) == 0, "--delete but messages are left on POP3"
    assert summary(r.stderr) == (300, 300, 0, 300), \
        f"summary {summary(r.stderr)}, expected 300 to import, 300 imported, 0 failed, 300 deleted"
    ledgers = m.ledger_files()
    assert ledgers, f"no ledger (*.db) under XDG_STATE_HOME {m.xdg}: {m.state_entries()}"
    assert not m.home_state_entries(), \
        f"XDG_STATE_HOME was set, but something was written under HOME/.local/state: " \
        f"{m.home_state_entries()}"

    r2 = m.run("--delete", mailbox="Archive")
    assert r2.rc == EX_OK, f"second migrate exited {r2.rc}, expected 0"
    assert summary(r2.stderr)[:2] == (0, 0), \
        f"second run's summary {summary(r2.stderr)}, expected 0 to import, 0 imported"
    assert m.dc.imap_count(m.dst, "Archive") == 300, "the second run changed Archive"
    assert m.ledger_files() == ledgers, "the second run used another ledger file"


# ----------------------------------------------------------------- 2
def test_migrate_dry_run_changes_nothing(t):
    m = Migration(t)
    raws = corpus(t, 40, 2)
    bigs = [big_message(f"{t.name}-{n}", n) for n in (90_000, 60_000)]
    m.deliver(raws[:20] + bigs[:1] + raws[20:] + bigs[1:])
    before = m.dc.pop3_messages(m.src)
    big_uidl = [u for u, body in before if body == normalise(bigs[0])][0]
    total = len(raws) + len(bigs)

    r = m.run("--dry-run", "--delete", mailbox="DryRun")
    assert r.rc == EX_OK, f"--dry-run exited {r.rc}, expected 0"
    out = r.output
    assert re.search(rf"\b{total} messages\b", out), f"the dry run does not say '{total} messages'"
    assert re.search(rf"\b{total} to import\b", out), f"the dry run does not say '{total} to import'"
    assert re.search(r"largest", out, re.I), "the dry run does not list the largest messages"
    assert re.search(r"DryRun.*(will be created|does not exist)", out), \
        "the dry run does not say that the mailbox DryRun will be created"
    largest = [line for line in out.splitlines() if re.search("largest", line, re.I)]
    assert big_uidl in largest[0], \
        f"the first 'largest' line is not the 90 kB message (UIDL {big_uidl}): {largest[0]!r}"
    assert "DryRun" not in imap_mailboxes(m.dc, m.dst), "--dry-run created the IMAP mailbox"
    assert m.dc.pop3_messages(m.src) == before, "--dry-run changed the POP3 mailbox"
    assert not m.ledger_files(), f"--dry-run wrote a ledger: {m.ledger_files()}"
    assert not m.state_entries(), \
        f"--dry-run wrote under XDG_STATE_HOME: {m.state_entries()}"
    assert not m.home_state_entries(), \
        f"--dry-run wrote under HOME/.local/state: {m.home_state_entries()}"

    # After a real migration (--keep) and 4 new messages, the dry run counts
    # only those as to import and still changes nothing.
    r = m.run(mailbox="DryRun")
    assert r.rc == EX_OK, f"migrate exited {r.rc}"
    later = corpus(t, 4, 22, tag=f"{t.name}-later")
    m.deliver(later)
    before = m.dc.pop3_messages(m.src)
    r = m.run("--dry-run", mailbox="DryRun")
    assert r.rc == EX_OK, f"second --dry-run exited {r.rc}"
    assert re.search(rf"\b{total + 4} messages\b", r.output), \
        f"the dry run does not say '{total + 4} messages'"
    assert re.search(r"\b4 to import\b", r.output), \
        "after a migration and 4 new messages the dry run does not say '4 to import'"
    assert m.dc.imap_count(m.dst, "DryRun") == total, "--dry-run changed the mailbox"
    assert m.dc.pop3_messages(m.src) == before, "--dry-run changed the POP3 mailbox"


# ----------------------------------------------------------------- 3
def test_migrate_flags_and_default_unread(t):
    dc = t.dovecot()
    flagged = Migration(t, dc, label="f")
    plain = Migration(t, dc, label="p")
    raws = corpus(t, 8, 3)
    flagged.deliver(raws)
    plain.deliver(raws)

    r = flagged.run("--flags", "\\Seen,\\Flagged")
    assert r.rc == EX_OK, f"migrate --flags exited {r.rc}"
    msgs = dc.imap_messages(flagged.dst)
    assert_exactly_once(raws, msgs)
    for x in msgs:
        assert x["flags"] == {"\\Seen", "\\Flagged"}, \
            f"--flags \\Seen,\\Flagged: a message has flags {sorted(x['flags'])}"

    r = plain.run()
    assert r.rc == EX_OK, f"migrate exited {r.rc}"
    msgs = dc.imap_messages(plain.dst)
    assert_exactly_once(raws, msgs)
    for x in msgs:
        assert "\\Seen" not in x["flags"], \
            f"without --flags a message arrived read: flags {sorted(x['flags'])}"
        assert x["flags"] == set(), f"without --flags: flags {sorted(x['flags'])}, expected none"
    # The default is --keep: POP3 untouched, and running again (the ledger
    # now knows every message) imports nothing twice.
    assert dc.pop3_count(plain.src) == len(raws), "the default (--keep) deleted POP3 messages"
    r = plain.run()
    assert r.rc == EX_OK and summary(r.stderr)[:2] == (0, 0), \
        f"a second run with --keep: exit {r.rc}, summary {summary(r.stderr)}"
    assert dc.imap_count(plain.dst) == len(raws), "a second run with --keep imported copies"


# ----------------------------------------------------------------- 4
def test_migrate_interrupt_and_resume(t):
    TOTAL = 2000
    m = Migration(t)
    raws = corpus(t, TOTAL, 4)
    m.deliver(raws)
    want = {normalise(r) for r in raws}
    assert len(want) == TOTAL

    # Three SIGINTs at different moments: as soon as a first message is in
    # the mailbox, 0.3 s and 1.0 s after the run announced itself.
    moments = [("first mail in", None), ("0.3 s", 0.3), ("1.0 s", 1.0)]
    mid_work = 0
    for n, (label, delay) in enumerate(moments, 1):
        before = imap_count_or_none(m.dc, m.dst, "Archive") or 0
        p = m.popen("--delete", mailbox="Archive", stderr_path=t.tmp / f"int{n}.stderr")
        assert p.wait_for(r"ledger in|migrate: \d+/\d+ messages", 30), \
            f"interrupt {n}: the run did not start within 30 s: {p.stderr()[-300:]!r}"
        if delay is None:
            deadline = time.monotonic() + 10
            while p.running() and time.monotonic() < deadline:
                if (imap_count_or_none(m.dc, m.dst, "Archive") or 0) > before:
                    break
                time.sleep(0.05)
        else:
            time.sleep(delay)
        was_running = p.running()
        sent = time.monotonic()
        p.signal(signal.SIGINT)
        rc = p.wait(10)
        took = time.monotonic() - sent
        err = p.stderr()
        assert rc is not None, f"interrupt {n} ({label}): still running 10 s after SIGINT"
        t.note(f"interrupt {n} ({label}): exit {rc} {took:.2f} s after SIGINT"
               f"{'' if was_running else ' (it had finished already)'}")
        if was_running:
            assert RESUME_RE.search(err), \
                f"interrupt {n} ({label}): exit {rc}, but stderr does not say to run " \
                f"the same command again: {err[-400:]!r}"
        # Nothing lost, nothing twice, at every stop.
        inbox = [x["body"] for x in m.dc.imap_messages(m.dst, "Archive")] \
            if imap_count_or_none(m.dc, m.dst, "Archive") is not None else []
        left = pop3_bodies(m.dc, m.src)
        assert len(set(inbox)) == len(inbox), \
            f"interrupt {n}: {len(inbox) - len(set(inbox))} duplicates in Archive"
        assert set(inbox) <= want, f"interrupt {n}: unexpected messages in Archive"
        lost = want - set(inbox) - set(left)
        assert not lost, f"interrupt {n}: {len(lost)} messages neither in Archive nor on POP3"
        if before < len(inbox) < TOTAL:
            mid_work += 1
    assert mid_work >= 1, "no interrupt landed while the migration was under way"
    t.note(f"{mid_work} of 3 interrupts stopped a migration under way")

    r = m.run("--delete", mailbox="Archive")
    assert r.rc == EX_OK, f"the resuming run exited {r.rc}"
    assert_exactly_once(raws, m.dc.imap_messages(m.dst, "Archive"), "Archive")
    assert m.dc.pop3_count(m.src) == 0, "--delete but messages are left on POP3 after resuming"


# ----------------------------------------------------------------- 5
def test_migrate_refused_message_reported(t):
    # Dovecot refuses APPENDs over 100K with
    #   NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration
    m = Migration(t, quota_max_mail_size="100K")
    small = corpus(t, 10, 5)
    big = big_message(t.name, 150_000)
    m.deliver(small[:4] + [big] + small[4:])
    big_uidl = uidl_of(m.dc, m.src, big)

    r = m.run("--delete")
    assert r.rc == EX_DATAERR, f"a message was refused: exit {r.rc}, expected {EX_DATAERR}"
    assert_exactly_once(small, m.dc.imap_messages(m.dst))
    left = m.dc.pop3_messages(m.src)
    assert [normalise(body) for _, body in left] == [normalise(big)], \
        f"POP3 should keep exactly the refused message, it has {len(left)}"
    report = not_imported(r.stderr)
    assert big_uidl in report, \
        f"the closing report has no 'migrate: not imported: UIDL {big_uidl}: ...' line " \
        f"(it lists {sorted(report)})"
    assert re.search(r"larger than the maximum size|\[LIMIT\]", report[big_uidl]), \
        f"the reason given is not the server's: {report[big_uidl]!r}"
    assert set(report) == {big_uidl}, f"the report lists other messages: {sorted(report)}"
    assert summary(r.stderr)[1:3] == (len(small), 1), \
        f"summary {summary(r.stderr)}: expected {len(small)} imported, 1 failed"

    # The same command again: the refused message is tried again, refused
    # again, reported again; nothing else moves.
    r = m.run("--delete")
    assert r.rc == EX_DATAERR, f"second run: exit {r.rc}, expected {EX_DATAERR}"
    assert big_uidl in not_imported(r.stderr), "the second run's report does not list it"
    assert_exactly_once(small, m.dc.imap_messages(m.dst))
    assert [normalise(b) for _, b in m.dc.pop3_messages(m.src)] == [normalise(big)], \
        "the second run lost or deleted the refused message"


# ----------------------------------------------------------------- 6
def test_migrate_passwords_and_wrong_imap_password(t):
    dc = t.dovecot()
    # From commands; the commands win over (wrong) passwords in the environment.
    a = Migration(t, dc, label="a")
    raws = corpus(t, 5, 6)
    a.deliver(raws)
    env = a.env(pop_pw="wrong-env-pop", imap_pw="wrong-env-imap")
    r = a.run(env=env, args=a.args("--password-command-pop", f"echo {a.pop_pw}",
                                   "--password-command-imap", f"printf %s {a.imap_pw}"))
    assert r.rc == EX_OK, f"passwords from --password-command-*: exit {r.rc}"
    assert_exactly_once(raws, dc.imap_messages(a.dst))
    assert_no_secret(r.output, [("POP3 password", a.src, a.pop_pw),
                                ("IMAP password", a.dst, a.imap_pw)], "the output")

    # From the environment.
    b = Migration(t, dc, label="b")
    b.deliver(raws)
    r = b.run()
    assert r.rc == EX_OK, f"passwords from the environment: exit {r.rc}"
    assert_exactly_once(raws, dc.imap_messages(b.dst))
    assert_no_secret(r.output, [("POP3 password", b.src, b.pop_pw),
                                ("IMAP password", b.dst, b.imap_pw)], "the output")

    # A wrong IMAP password, from the environment and from a command.
    c = Migration(t, dc, label="c")
    c.deliver(raws)
    wrong = "wrong-imap-pw-" + c.imap_pw[3:]
    for how, env, extra in (
            ("environment", c.env(imap_pw=wrong), []),
            ("command", c.env(imap_pw=None), ["--password-command-imap", f"echo {wrong}"])):
        r = c.run(env=env, args=c.args("--delete", *extra))
        assert r.rc == EX_NOPERM, f"wrong IMAP password ({how}): exit {r.rc}, expected {EX_NOPERM}"
        assert r.output.strip(), f"wrong IMAP password ({how}): nothing said"
        assert_no_secret(r.output, [("wrong IMAP password", c.dst, wrong),
                                    ("POP3 password", c.src, c.pop_pw),
                                    ("real IMAP password", c.dst, c.imap_pw)],
                         f"the output (wrong IMAP password from the {how})")
        assert dc.pop3_count(c.src) == len(raws), \
            f"wrong IMAP password ({how}), yet POP3 messages were deleted"
        assert dc.imap_count(c.dst) == 0

    # With the protocol trace on (-vv) neither password shows either.
    r = c.run(env=c.env(imap_pw=wrong), args=["-vv", *c.args("--delete")])
    assert r.rc == EX_NOPERM, f"wrong IMAP password with -vv: exit {r.rc}, expected {EX_NOPERM}"
    assert "AUTHENTICATIONFAILED" in r.output or re.search(r"refused|login", r.output, re.I), \
        "-vv: the refused login is not reported"
    assert_no_secret(r.output, [("wrong IMAP password", c.dst, wrong),
                                ("POP3 password", c.src, c.pop_pw)], "the -vv output")

    # A wrong POP3 password: 77 as well, nothing moved, nothing shown.
    r = c.run(env=c.env(pop_pw="wrong-pop-pw-" + c.pop_pw[3:]), args=c.args("--delete"))
    assert r.rc == EX_NOPERM, f"wrong POP3 password: exit {r.rc}, expected {EX_NOPERM}"
    assert_no_secret(r.output, [("wrong POP3 password", c.src, "wrong-pop-pw-" + c.pop_pw[3:]),
                                ("IMAP password", c.dst, c.imap_pw)], "the output")
    assert dc.pop3_count(c.src) == len(raws) and dc.imap_count(c.dst) == 0


# ----------------------------------------------------------------- 7
def test_migrate_usage_errors(t):
    m = Migration(t)
    raws = corpus(t, 2, 7)
    m.deliver(raws)
    base = m.args()
    pop_url, imap_url = base[1], base[2]
    http = f"http://localhost:{m.dc.imap_port}"
    ui = base.index("--user-imap")
    cases = {
        "missing --user-imap": (base[:ui] + base[ui + 2:], r"--user-imap"),
        "three positional args": (base[:3] + [imap_url + "/Other"] + base[3:], r"usage"),
        "--keep and --delete": (base + ["--keep", "--delete"], r"usage|--keep.*--delete"),
        "http:// IMAP URL": ([base[0], pop_url, http] + base[3:], r"http://.*imaps?://"),
        "http:// POP3 URL": ([base[0], http.replace(str(m.dc.imap_port), str(m.dc.pop3_port)),
                             imap_url] + base[3:], r"http://.*pop3s?://"),
        "unknown option": (base + ["--frobnicate"], r"frobnicate"),
        "bad flag": (base + ["--flags", "\\Seen,(oops"], r"flag"),
        "relative --state-dir": (base + ["--state-dir", "relative/dir"], r"state-dir"),
    }
    for what, (args, rx) in cases.items():
        r = m.run(args=args)
        assert r.rc == EX_USAGE, f"[{what}] exit {r.rc}, expected {EX_USAGE}"
        assert r.stderr.strip(), f"[{what}] exit 64 without a message on stderr"
        assert re.search(rx, r.stderr, re.I), \
            f"[{what}] the message does not say what is wrong: {r.stderr.strip()[:200]!r}"
    # No password anywhere and no terminal to ask on: a usage error naming
    # where a password can come from, before any network use.
    for which, env in (("POP3", m.env(pop_pw=None)), ("IMAP", m.env(imap_pw=None))):
        r = m.run(env=env)
        assert r.rc == EX_USAGE, f"no {which} password and no terminal: exit {r.rc}, expected 64"
        assert f"POPBRIDGE_{which}_PASSWORD" in r.stderr, \
            f"no {which} password: the message does not name POPBRIDGE_{which}_PASSWORD"
    assert not m.state_entries(), f"a usage error wrote under XDG_STATE_HOME: {m.state_entries()}"
    assert not m.dc.auth_attempts(m.src) and not m.dc.auth_attempts(m.dst), \
        "a usage error still logged in to the servers"
    assert m.dc.pop3_count(m.src) == len(raws)


# ----------------------------------------------------------------- 8
def test_migrate_progress_lines_off_a_terminal(t):
    TOTAL = 1500
    m = Migration(t)
    raws = corpus(t, TOTAL, 8)
    m.deliver(raws)

    r = m.run()
    assert r.rc == EX_OK, f"migrate exited {r.rc}"
    lines = PROGRESS_RE.findall(r.stderr)
    assert lines, "stderr has no progress line 'migrate: N/M messages'"
    assert all(int(total) == TOTAL for _, total in lines), \
        f"progress lines count to {sorted({x for _, x in lines})}, not {TOTAL}"
    assert int(lines[-1][0]) == TOTAL, f"the last progress line says {lines[-1][0]}/{TOTAL}"
    done = [int(d) for d, _ in lines]
    assert done == sorted(done), f"progress goes backwards: {done}"
    if r.seconds > 12:
        assert len(lines) >= 2, f"a {r.seconds:.0f} s run showed one progress line only"
    assert "\r" not in r.stderr and "[#" not in r.stderr, \
        "off a terminal stderr has a progress bar ('\\r', '[#')"
    assert summary(r.stderr) == (TOTAL, TOTAL, 0, 0), f"summary {summary(r.stderr)}"
    assert re.search(r"\d messages/s", r.stderr), "the summary has no rate ('messages/s')"
    t.note(f"{len(lines)} progress line(s) in {r.seconds:.1f} s")
    assert_exactly_once(raws, m.dc.imap_messages(m.dst))


# ----------------------------------------------------------------- 9
def test_migrate_progress_bar_on_a_terminal(t):
    TOTAL = 300
    m = Migration(t)
    raws = corpus(t, TOTAL, 9)
    m.deliver(raws)

    run = run_on_pty(t, m.args("--delete", mailbox="Terminal"), m.env(), timeout=120)
    code, text = run.code, run.text
    assert code is not None, "migrate on a terminal did not finish within 120 s"
    assert code == EX_OK, f"migrate on a terminal exited {code}"
    assert "\r" in text and "[#" in text, \
        f"no progress bar ('\\r[#...') on the terminal: {text[-300:]!r}"
    assert re.search(rf"\b{TOTAL}/{TOTAL} messages\b", text), \
        f"the bar never shows {TOTAL}/{TOTAL} messages"
    assert not re.search(r"password( for|:)", text, re.I), \
        "with both passwords in the environment it still asked (or spoke of a password)"
    assert_no_secret(text, [("POP3 password", m.src, m.pop_pw),
                            ("IMAP password", m.dst, m.imap_pw)], "the terminal")
    assert not re.search(r"migrate: \d+/\d+ messages,", text), \
        "on a terminal it printed log-style progress lines instead of (or besides) the bar"
    assert summary(text)[:2] == (TOTAL, TOTAL), f"summary {summary(text)}"
    assert_exactly_once(raws, m.dc.imap_messages(m.dst, "Terminal"), "Terminal")
    assert m.dc.pop3_count(m.src) == 0


# ----------------------------------------------------------------- 10
def test_migrate_url_encoded_mailbox(t):
    m = Migration(t)
    raws = corpus(t, 100, 10)
    m.deliver(raws)

    r = m.run(mailbox="Old%20Mail")
    assert r.rc == EX_OK, f"migrate exited {r.rc}"
    boxes = imap_mailboxes(m.dc, m.dst)
    assert "Old Mail" in boxes, f"no mailbox 'Old Mail'; the mailboxes are {boxes}"
    assert not [b for b in boxes if "%" in b], f"a mailbox with the %-encoding in its name: {boxes}"
    assert_exactly_once(raws, m.dc.imap_messages(m.dst, "Old Mail"), "Old Mail")
    assert m.dc.imap_count(m.dst) == 0, "mail went to INBOX"
    assert m.dc.pop3_count(m.src) == len(raws), "the default (--keep) deleted POP3 messages"


# ----------------------------------------------------------------- beyond the ten
def test_migrate_ctrl_c_on_a_terminal_then_resume(t):
    """Ctrl-C typed on the terminal (SIGINT to the foreground group) while
    the bar moves: it stops within 10 s, says to run it again; the run
    again completes with every message exactly once."""
    TOTAL = 2000
    m = Migration(t)
    raws = corpus(t, TOTAL, 11)
    m.deliver(raws)
    args = m.args("--delete", mailbox="Archive")

    run = run_on_pty(t, args, m.env(), timeout=120,
                     script=[(rb"\[#+\.*\] \d+/%d messages" % TOTAL, b"\x03")])
    text = run.text
    assert run.fired, f"the bar never showed on the terminal: {text[-300:]!r}"
    assert run.code is not None, "still running 120 s after Ctrl-C"
    took = run.ended - run.fired[0]
    t.note(f"Ctrl-C on the terminal: exit {run.code} {took:.2f} s later; the terminal's "
           "last lines:\n" + "\n".join("    " + repr(x) for x in text.split("\n")[-5:]))
    assert took < 10, f"it took {took:.1f} s to stop after Ctrl-C"
    in_archive = imap_count_or_none(m.dc, m.dst, "Archive") or 0
    if in_archive < TOTAL:
        assert RESUME_RE.search(text), \
            f"stopped at {in_archive}/{TOTAL}, but does not say to run it again: {text[-400:]!r}"

    r = m.run("--delete", mailbox="Archive")
    assert r.rc == EX_OK, f"the resuming run exited {r.rc}"
    assert_exactly_once(raws, m.dc.imap_messages(m.dst, "Archive"), "Archive")
    assert m.dc.pop3_count(m.src) == 0, "--delete but messages are left on POP3"


# A bar segment followed on the same terminal line by a log line.
BAR_THEN_LOG = re.compile(r"\] \d+/\d+ messages[^\r\n]*?popbridge: ")


def glued(text):
    """Where a log line was written onto the progress bar's line."""
    return [text[m.start() - 1:m.end() + 60] for m in BAR_THEN_LOG.finditer(text)]


def test_migrate_terminal_log_lines_start_their_own_line(t):
    """On a terminal, a line logged while the bar is showing (a message the
    server refused, Ctrl-C's "stopping") starts on a line of its own
    instead of continuing the bar's line."""
    dc = t.dovecot(quota_max_mail_size="100K")
    big = big_message(t.name, 150_000)
    # The refused message comes after the first batches, once the bar shows.
    m = Migration(t, dc, label="ref")
    raws = corpus(t, 100, 19)
    m.deliver(raws[:70] + [big] + raws[70:])
    run = run_on_pty(t, m.args("--delete"), m.env(), timeout=60)
    assert run.code == EX_DATAERR, f"on a terminal: exit {run.code}, expected {EX_DATAERR}"
    assert_exactly_once(raws, dc.imap_messages(m.dst))
    assert uidl_of(dc, m.src, big) in not_imported(run.text.replace("\r", "")), \
        "on a terminal the closing report does not list the refused message"
    refused = glued(run.text)

    c = Migration(t, dc, label="int")
    raws = corpus(t, 1000, 20, tag=f"{t.name}-int")
    c.deliver(raws)
    run = run_on_pty(t, c.args("--delete"), c.env(), timeout=60,
                     script=[(rb"\] \d+/1000 messages", b"\x03")])
    assert run.code is not None
    stopping = glued(run.text)
    assert not refused, f"the refusal is written onto the progress bar's line: {refused[0]!r}"
    assert not stopping, f"after Ctrl-C a log line is written onto the bar's line: {stopping[0]!r}"


def test_migrate_double_ctrl_c_then_resume(t):
    """A second SIGINT ends it at once (mid-batch); the next run still
    imports every message exactly once."""
    TOTAL = 1000
    m = Migration(t)
    raws = corpus(t, TOTAL, 16)
    m.deliver(raws)
    p = m.popen("--delete", mailbox="Archive", stderr_path=t.tmp / "double.stderr")
    assert p.wait_for(r"ledger in", 30), f"the run did not start: {p.stderr()[-300:]!r}"
    deadline = time.monotonic() + 10
    while p.running() and time.monotonic() < deadline:
        if (imap_count_or_none(m.dc, m.dst, "Archive") or 0) > 0:
            break
        time.sleep(0.02)
    p.signal(signal.SIGINT)
    time.sleep(0.01)
    p.signal(signal.SIGINT)
    rc = p.wait(10)
    assert rc is not None, "still running 10 s after two SIGINTs"
    t.note(f"two SIGINTs: exit {rc}, {imap_count_or_none(m.dc, m.dst, 'Archive')} in Archive")

    r = m.run("--delete", mailbox="Archive")
    assert r.rc == EX_OK, f"the run after two SIGINTs exited {r.rc}"
    assert_exactly_once(raws, m.dc.imap_messages(m.dst, "Archive"), "Archive")
    assert m.dc.pop3_count(m.src) == 0


def test_migrate_same_command_twice_at_once(t):
    """The same migration started again while it runs: the second stops at
    once with a temporary failure (the ledger is locked), the first
    finishes, nothing twice."""
    TOTAL = 2000
    m = Migration(t)
    raws = corpus(t, TOTAL, 17)
    m.deliver(raws)
    first = m.popen("--delete", mailbox="Archive", stderr_path=t.tmp / "first.stderr")
    assert first.wait_for(r"ledger in", 30), f"the first run did not start: {first.stderr()[-300:]!r}"
    second = m.run("--delete", mailbox="Archive", timeout=60)
    overlapped = first.running()
    rc = first.wait(120)
    assert rc == EX_OK, f"the first run exited {rc}"
    if overlapped:
        assert second.rc == EX_TEMPFAIL, \
            f"the same migration started while it ran: exit {second.rc}, expected {EX_TEMPFAIL}"
        assert re.search(r"lock|already|another|running|busy", second.stderr, re.I), \
            f"the second run does not say the migration is already running: {second.stderr[-300:]!r}"
    else:
        t.note("the first run finished before the second started; the lock was not tested")
    assert_exactly_once(raws, m.dc.imap_messages(m.dst, "Archive"), "Archive")
    assert m.dc.pop3_count(m.src) == 0


def test_migrate_state_dir_option(t):
    """--state-dir D puts the ledger in D (and nothing under XDG_STATE_HOME);
    the same command again with it resumes."""
    m = Migration(t)
    raws = corpus(t, 20, 18)
    m.deliver(raws)
    state = t.tmp / "explicit-state"
    r = m.run("--state-dir", state)
    assert r.rc == EX_OK, f"migrate --state-dir exited {r.rc}"
    assert list(state.glob("*.db")), f"no ledger (*.db) in --state-dir {state}"
    assert not m.state_entries(), "--state-dir given, yet written under XDG_STATE_HOME"
    r = m.run("--state-dir", state)
    assert r.rc == EX_OK and summary(r.stderr)[:2] == (0, 0), \
        f"the same command again: exit {r.rc}, summary {summary(r.stderr)}"
    assert m.dc.imap_count(m.dst) == len(raws)


def test_migrate_progress_every_5s_on_a_slow_link(t):
    """Off a terminal, a long migration shows a progress line every 5 s,
    not just one at the end (POP3 through a relay limited to 250 kB/s)."""
    TOTAL = 1500
    m = Migration(t)
    raws = corpus(t, TOTAL, 12)
    m.deliver(raws)
    size = sum(len(r) for r in raws)
    with RateLimitRelay(m.dc.pop3s_port, 250_000) as th:
        m.pop3_port = th.port
        p = m.popen(stderr_path=t.tmp / "slow.stderr")
        seen, stamps = 0, []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = PROGRESS_RE.findall(p.stderr())
            now = time.monotonic()
            stamps += [now] * (len(found) - seen)
            seen = len(found)
            if not p.running():
                break
            time.sleep(0.05)
        rc = p.wait(5)
    err = p.stderr()
    seconds = time.monotonic() - p.t0
    lines = PROGRESS_RE.findall(err)
    t.note(f"{size / 1e6:.1f} MB through the relay in {seconds:.1f} s: "
           f"{len(lines)} progress lines at "
           + ", ".join(f"{s - p.t0:.1f}" for s in stamps) + " s")
    assert rc == EX_OK, f"migrate through the slow relay exited {rc}"
    assert seconds > 7, f"the relay did not slow it down enough to test ({seconds:.1f} s)"
    assert len(lines) >= 2, \
        f"a {seconds:.0f} s migration showed {len(lines)} progress line(s); one every 5 s expected"
    assert int(lines[-1][0]) == TOTAL
    gaps = [b - a for a, b in zip(stamps, stamps[1:-1])]
    assert all(g > 3.5 for g in gaps), f"progress lines closer than 5 s apart: {gaps}"
    assert stamps[0] - p.t0 < 10, f"the first progress line came {stamps[0] - p.t0:.1f} s in"
    assert summary(err) == (TOTAL, TOTAL, 0, 0)
    assert_exactly_once(raws, m.dc.imap_messages(m.dst))


def test_migrate_asks_for_passwords_on_the_terminal(t):
    """No password options or variables: it asks for both on the terminal,
    without echo, and imports."""
    m = Migration(t)
    raws = corpus(t, 20, 13)
    m.deliver(raws)
    run = run_on_pty(t, m.args(), m.env(pop_pw=None, imap_pw=None), timeout=60, script=[
        (rb"POP3 password[^\n]*: ?$", m.pop_pw.encode() + b"\n"),
        (rb"IMAP password[^\n]*: ?$", m.imap_pw.encode() + b"\n")])
    text = run.text
    t.note("terminal transcript:\n" + "\n".join("    " + x for x in text.splitlines()[:4]))
    assert len(run.fired) == 2, f"it did not ask for both passwords: {text[:300]!r}"
    assert run.code == EX_OK, f"migrate with passwords typed on the terminal exited {run.code}"
    assert_no_secret(text, [("POP3 password", m.src, m.pop_pw),
                            ("IMAP password", m.dst, m.imap_pw)], "the terminal (echo was on?)")
    assert_exactly_once(raws, m.dc.imap_messages(m.dst))


def test_migrate_same_accounts_spelled_differently_resume(t):
    """The ledger belongs to the two accounts: the same migration written
    with imap:// (STARTTLS) instead of imaps://, or with the host name in
    capitals (host names are case-insensitive), imports nothing twice."""
    m = Migration(t)
    raws = corpus(t, 30, 14)
    m.deliver(raws)
    r = m.run(mailbox="Archive")
    assert r.rc == EX_OK, f"migrate exited {r.rc}"
    assert m.dc.imap_count(m.dst, "Archive") == len(raws)

    base = m.args(mailbox="Archive")
    starttls = f"imap://{m.dc.host}:{m.dc.imap_port}/Archive"
    r = m.run(args=[base[0], base[1], starttls] + base[3:])
    assert r.rc == EX_OK, f"migrate with imap:// exited {r.rc}"
    assert m.dc.imap_count(m.dst, "Archive") == len(raws), \
        f"with imap:// instead of imaps:// it imported {summary(r.stderr)[1]} messages again"

    upper = m.imap_url("Archive").replace(f"//{m.dc.host}:", f"//{m.dc.host.upper()}:")
    pop_upper = m.pop3_url().replace(f"//{m.dc.host}:", f"//{m.dc.host.upper()}:")
    r = m.run(args=[base[0], pop_upper, upper] + base[3:])
    assert r.rc == EX_OK, f"migrate with the host in capitals exited {r.rc}"
    assert m.dc.imap_count(m.dst, "Archive") == len(raws), \
        f"with the host name written {m.dc.host.upper()} the same migration imported " \
        f"{summary(r.stderr)[1]} messages again ({m.dc.imap_count(m.dst, 'Archive')} in Archive " \
        f"for {len(raws)})"


def test_migrate_imap_unreachable_is_temporary(t):
    """Nothing listens on the IMAP port: exit 75, POP3 untouched (even with
    --delete), and it says to run the same command again."""
    m = Migration(t)
    raws = corpus(t, 5, 15)
    m.deliver(raws)
    dead = free_ports(1)[0]
    base = m.args("--delete", "--timeout", "10")
    r = m.run(args=[base[0], base[1], f"imaps://{m.dc.host}:{dead}/Archive"] + base[3:])
    assert r.rc == EX_TEMPFAIL, f"IMAP server unreachable: exit {r.rc}, expected {EX_TEMPFAIL}"
    assert RESUME_RE.search(r.stderr), "it does not say to run the same command again"
    assert m.dc.pop3_count(m.src) == len(raws), "IMAP unreachable, yet POP3 messages were deleted"


# ----------------------------------------------------------------- since
def dated_message(tag, i, date=None, received=None):
    head = ""
    if received:
        head += f"Received: from mx.example.org by mx.example.net; {received}\n"
    if date:
        head += f"Date: {date}\n"
    head += (f"From: dated{i}@example.org\nSubject: [{tag}] dated {i}\n"
             f"Message-ID: <dated.{i}.{tag}@example.org>\n\nbody {i}\n")
    return head.encode()


def test_migrate_since_leaves_older_mail_on_the_server(t):
    """--since 2023-01-01 with --delete: mail dated before it (by Date, else
    its newest Received) stays on the POP3 server untouched and is never
    imported; newer mail and mail with no date at all are imported and
    deleted; the log says how many were left; a second run leaves them too."""
    m = Migration(t)
    old = [dated_message(t.name, i, date=f"Mon, {i + 1} Jun 2020 10:00:00 +0000")
           for i in range(3)]
    old.append(dated_message(t.name, 3, received="Tue, 1 Jan 2019 08:00:00 +0100"))
    # Days are UTC days: 1 Jan 2023 00:30 +0100 is still 2022 ...
    old.append(dated_message(t.name, 4, date="Sun, 1 Jan 2023 00:30:00 +0100"))
    new = [dated_message(t.name, 10 + i, date=f"Wed, {i + 1} Mar 2023 10:00:00 +0000")
           for i in range(3)]
    new.append(dated_message(t.name, 20))                        # no date at all
    # ... and 31 Dec 2022 23:30 -0100 is already 2023.
    new.append(dated_message(t.name, 21, date="Sat, 31 Dec 2022 23:30:00 -0100"))
    m.deliver(old + new)

    r = m.run("--delete", "--since", "2023-01-01")
    assert r.rc == EX_OK, f"migrate --since exited {r.rc}: {r.stderr[-400:]}"
    assert_exactly_once(new, m.dc.imap_messages(m.dst))
    left = pop3_bodies(m.dc, m.src)
    assert sorted(left) == sorted(normalise(x) for x in old), \
        f"{len(left)} messages left on POP3, expected the {len(old)} older ones"
    assert re.search(rf"\b{len(old)} messages? dated before --since", r.stderr), \
        f"the log does not say how many were left: {r.stderr[-400:]}"

    r = m.run("--delete", "--since", "2023-01-01")
    assert r.rc == EX_OK
    assert_exactly_once(new, m.dc.imap_messages(m.dst))
    assert len(pop3_bodies(m.dc, m.src)) == len(old), "the second run touched the older mail"

    # Without --since the rest comes over too, once each.
    r = m.run("--delete")
    assert r.rc == EX_OK
    assert_exactly_once(old + new, m.dc.imap_messages(m.dst))
    assert m.dc.pop3_count(m.src) == 0


def test_migrate_since_and_limit_rate_usage(t):
    """Bad --since and --limit-rate values are usage errors (64) that say
    what is wanted, before any login."""
    m = Migration(t)
    m.deliver(corpus(t, 1, 3))
    for args, rx in ((["--since", "2023-13-01"], r"--since.*YYYY-MM-DD"),
                     (["--since", "yesterday"], r"--since"),
                     (["--since", "1969-12-31"], r"1970"),
                     (["--limit-rate", "10"], r"--limit-rate.*1000"),
                     (["--limit-rate", "fast"], r"--limit-rate"),
                     (["--limit-rate", "5x"], r"--limit-rate"),
                     (["--limit-rate", "99999999999999999999k"], r"--limit-rate")):
        r = m.run(*args)
        assert r.rc == EX_USAGE, f"{args}: exit {r.rc}, expected {EX_USAGE}"
        assert re.search(rx, r.stderr), f"{args}: {r.stderr.strip()[-200:]!r}"
    assert not m.dc.auth_attempts(m.src) and not m.dc.auth_attempts(m.dst)
    assert m.dc.pop3_count(m.src) == 1


def test_migrate_limit_rate_caps_the_bandwidth(t):
    """--limit-rate 100k: 400 kB of mail takes at least about 4 s (a cap
    makes a run slower, never faster, so only the lower bound is checked,
    and it holds on a busy machine); everything arrives once, bytes kept."""
    m = Migration(t)
    raws = [big_message(f"{t.name}.{i}", 20_000) for i in range(20)]
    m.deliver(raws)
    size = sum(len(x) for x in raws)
    t0 = time.monotonic()
    r = m.run("--delete", "--limit-rate", "100k")
    seconds = time.monotonic() - t0
    t.note(f"{size} bytes at --limit-rate 100k in {seconds:.1f} s")
    assert r.rc == EX_OK, f"migrate --limit-rate exited {r.rc}: {r.stderr[-300:]}"
    assert seconds >= 0.9 * size / 100_000, \
        f"{size} bytes in {seconds:.2f} s: faster than 100 kB/s"
    msgs = m.dc.imap_messages(m.dst)
    assert_exactly_once(raws, msgs)
    by_body = {x["body"]: x for x in msgs}
    for raw in raws:
        assert_bytes_equal(raw, by_body[normalise(raw)]["body"])
    assert m.dc.pop3_count(m.src) == 0
