"""`popbridge check` against live servers."""

import re

from harness import make_account, varied_messages


def test_check_reports_and_changes_nothing(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:3]]
    for raw in raws:
        dc.deliver(src, raw)
    cfg = t.config([dc.account("chk", src, dst, keep=False)])

    r = t.bridge("-c", cfg, "check")
    out = r.output
    assert r.rc == 0, f"check exited {r.rc}"
    assert "chk" in out, "check output does not name the account"
    assert re.search(r"TLSv1\.[23]", out), "check output does not show the TLS version"
    assert "UIDL" in out, "check output does not list the POP3 capabilities (UIDL)"
    assert "MULTIAPPEND" in out, "check output does not list the IMAP capabilities (MULTIAPPEND)"
    assert re.search(r"\b3\b[^\n]*messag|messag[^\n]*\b3\b", out, re.I), \
        "check output does not show the 3 waiting messages"
    assert re.search(r"CN\s*=\s*localhost", out), "check output does not show the certificate subject"
    assert re.search(r"INBOX[^\n]*exists|exists[^\n]*INBOX", out), \
        "check output does not say that the target mailbox exists"
    # check changes nothing
    assert dc.pop3_count(src) == len(raws), "check deleted POP3 messages"
    assert dc.imap_count(dst) == 0, "check imported messages"
    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == 0 and dc.imap_count(dst) == len(raws), "check left state that hides messages"


def test_check_starttls(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    cfg = t.config([dc.account("chk2", src, dst, mode="starttls")])
    r = t.bridge("-c", cfg, "check")
    assert r.rc == 0, f"check exited {r.rc}"
    assert re.search(r"TLSv1\.[23]", r.output), "check output does not show the TLS version"


def test_check_wrong_password_fails(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    acct = make_account("chkbad", dc.pop3_block(src), dc.imap_block(dst, password="not-it-31337"))
    cfg = t.config([acct])
    r = t.bridge("-c", cfg, "check")
    assert r.rc != 0, "check with a wrong IMAP password exited 0"
    assert "chkbad" in r.output
    assert "not-it-31337" not in r.output, "check shows the password"


def test_check_missing_mailbox_reported(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    cfg = t.config([dc.account("chkmb", src, dst, mailbox="NoSuchFolder")])
    r = t.bridge("-c", cfg, "check")
    assert re.search(r"NoSuchFolder[^\n]*(not exist|n't exist|missing|no such|not found)",
                     r.output, re.I), "check does not say that the target mailbox is missing"


def test_dry_run_names_a_mailbox_the_server_cannot_create(t):
    """A mailbox "Archive/2024" on a server whose hierarchy separator is
    "." (Dovecot's): the dry run says it cannot be created as named,
    rather than "will be created" (issue 13, point 7)."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, b"From: a@example.org\nSubject: one\n\nbody\n")
    bad = t.config([dc.account("sep", src, dst, mailbox="Archive/2024")], name="bad.conf")
    good = t.config([dc.account("sep", src, dst, mailbox="Archive.2024")], name="good.conf")
    r = t.bridge("-c", bad, "run", "--dry-run")
    assert r.rc == 0, f"dry run exited {r.rc}"
    assert "cannot be created with that name" in r.stdout and "will be created" not in r.stdout, \
        r.stdout
    r = t.bridge("-c", good, "run", "--dry-run")
    assert r.rc == 0 and "will be created" in r.stdout, r.stdout
    assert dc.pop3_count(src) == 1 and dc.imap_count(dst) == 0
