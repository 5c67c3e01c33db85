"""Authentication failures and TLS policy."""

import base64
import re

from harness import make_account, varied_messages

EX_NOPERM = 77


def secret_forms(user, password):
    """The password as it could leak: itself and inside SASL PLAIN/LOGIN."""
    forms = [password, base64.b64encode(password.encode()).decode()]
    for authz in ("", user):
        forms.append(base64.b64encode(f"{authz}\0{user}\0{password}".encode()).decode())
    return forms


def assert_no_secret(output, user, *passwords):
    for pw in passwords:
        for form in secret_forms(user, pw):
            assert form not in output, f"popbridge output shows a password ({form!r})"


def assert_names_account_and_host(output, account, host="localhost"):
    lines = [line for line in output.splitlines() if account in line and host in line]
    assert lines, f"no line on stderr names both the account {account!r} and the server {host!r}"


def test_wrong_imap_password(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    for raw in raws:
        dc.deliver(src, raw)
    bad = "wrong-imap-secret-4711"
    acct = make_account("badimap", dc.pop3_block(src), dc.imap_block(dst, password=bad),
                        keep=False)
    cfg = t.config([acct])

    r = t.bridge("-c", cfg, "-vv", "run")
    assert r.rc == EX_NOPERM, f"exit {r.rc}, expected {EX_NOPERM} (authentication refused)"
    assert_names_account_and_host(r.stderr, "badimap")
    assert_no_secret(r.output, dst, bad, dc.users[dst])
    assert_no_secret(r.output, src, dc.users[src])
    assert dc.pop3_count(src) == len(raws), "POP3 messages were deleted although nothing was imported"
    assert dc.imap_count(dst) == 0


def test_wrong_pop3_password(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, varied_messages(t.name)[0][1])
    bad = "wrong-pop3-secret-0815"
    acct = make_account("badpop", dc.pop3_block(src, password=bad), dc.imap_block(dst))
    cfg = t.config([acct])

    r = t.bridge("-c", cfg, "-vv", "run")
    assert r.rc == EX_NOPERM, f"exit {r.rc}, expected {EX_NOPERM} (authentication refused)"
    assert_names_account_and_host(r.stderr, "badpop")
    assert_no_secret(r.output, src, bad, dc.users[src])
    assert_no_secret(r.output, dst, dc.users[dst])
    assert dc.imap_count(dst) == 0
    assert dc.pop3_count(src) == 1


def test_wrong_password_other_account_still_runs(t):
    """One account's failed login does not stop the others; exit still 77."""
    dc = t.dovecot()
    s1, d1, s2, d2 = (t.user(dc, r) for r in ("s", "d", "s", "d"))
    raw = varied_messages(t.name)[1][1]
    dc.deliver(s1, raw)
    dc.deliver(s2, raw)
    bad = make_account("broken", dc.pop3_block(s1, password="nope-nope-1"), dc.imap_block(d1))
    good = dc.account("fine", s2, d2)
    cfg = t.config([bad, good])

    r = t.bridge("-c", cfg, "-v", "run")
    assert dc.imap_count(d2) == 1, "the good account was not imported"
    assert r.rc == EX_NOPERM, f"exit {r.rc}, expected {EX_NOPERM}"


def _no_starttls(t, side):
    """POP3 or IMAP side on the ssl = no instance with a STARTTLS URL."""
    plain = t.dovecot(ssl=False)
    tls = t.dovecot()
    if side == "pop3":
        victim = t.user(plain, "s")
        other = t.user(tls, "d")
        plain.deliver(victim, varied_messages(t.name)[0][1])
        acct = make_account("nostls", plain.pop3_block(victim, mode="starttls"),
                            tls.imap_block(other), keep=False)
    else:
        victim = t.user(plain, "d")
        other = t.user(tls, "s")
        tls.deliver(other, varied_messages(t.name)[0][1])
        acct = make_account("nostls", tls.pop3_block(other),
                            plain.imap_block(victim, mode="starttls"), keep=False)
    assert "tls" not in acct[side]
    cfg = t.config([acct])

    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc != 0, "STARTTLS was required but not offered, yet popbridge exited 0"
    assert "nostls" in r.stderr, "the error does not name the account"
    assert re.search(r"STARTTLS|STLS|TLS", r.stderr), "the error does not mention STARTTLS/TLS"
    attempts = plain.auth_attempts(victim)
    assert not attempts, f"credentials were sent without TLS: {attempts[0]}"
    assert_no_secret(r.output, victim, plain.users[victim])
    if side == "pop3":
        assert plain.pop3_count(victim) == 1, "message deleted from the POP3 server"
        assert tls.imap_count(other) == 0
    else:
        assert tls.pop3_count(other) == 1, "message deleted from the POP3 server"
        assert plain.imap_count(victim) == 0


def test_pop3_starttls_required_not_offered(t):
    _no_starttls(t, "pop3")


def test_imap_starttls_required_not_offered(t):
    _no_starttls(t, "imap")


def test_tls_none_plaintext_works_with_warning(t):
    dc = t.dovecot(ssl=False)
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:3]]
    for raw in raws:
        dc.deliver(src, raw)
    acct = dc.account("acct9", src, dst, mode="plain")
    assert acct["pop3"]["tls"] == "none" and acct["imap"]["tls"] == "none"
    cfg = t.config([acct])

    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == 0, f"exit {r.rc}"
    assert dc.imap_count(dst) == len(raws)
    # The warning's wording is free; it must name the account and say that
    # the connection is not encrypted.
    plain_words = r"warn|without TLS|no TLS|in (the )?clear|cleartext|unencrypted|not encrypted|insecure|plaintext"
    warn = [line for line in r.stderr.splitlines()
            if "acct9" in line and re.search(plain_words, line, re.I)]
    assert warn, "no warning naming the account that its connections are not encrypted"


def test_refused_login_rests_under_cron(t):
    """A wrong password under cron is not tried at the provider at every
    run (providers lock accounts for that): after a refusal `run` rests
    the account (77, one line saying until when and how to force it, no
    login attempt reaches the server); a changed config is tried at once,
    and so is `run --force`.  Before the fix: every run logged in again."""
    import os
    import time
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    dc.deliver(src, varied_messages(t.name)[0][1])
    bad = "wrong-pop3-secret-0815"
    cfg = t.config([make_account("rest", dc.pop3_block(src, password=bad),
                                 dc.imap_block(dst))])
    r1 = t.bridge("-c", cfg, "run")
    assert r1.rc == EX_NOPERM, f"first run: exit {r1.rc}"
    tried = len(dc.auth_attempts(src))
    assert tried >= 1, "the first run did not try to log in"
    r2 = t.bridge("-c", cfg, "run")
    assert r2.rc == EX_NOPERM, f"second run: exit {r2.rc}"
    assert re.search(r"rest: the login was refused 1 time in a row .*not tried again "
                     r"before \d\d:\d\d.*--force rest", r2.output), r2.output
    # Dovecot logs what it saw before popbridge's second run ended.
    assert len(dc.auth_attempts(src)) == tried, \
        "the resting run logged in at the provider anyway"
    assert_no_secret(r2.output, src, bad)
    r3 = t.bridge("-c", cfg, "run", "--force")
    assert r3.rc == EX_NOPERM and len(dc.auth_attempts(src)) > tried, \
        "run --force did not try the login"
    tried = len(dc.auth_attempts(src))
    # A fixed password (the config changes) is tried at once.
    cfg = t.config([make_account("rest", dc.pop3_block(src), dc.imap_block(dst))])
    future = time.time() + 2
    os.utime(cfg, (future, future))
    r4 = t.bridge("-c", cfg, "run")
    assert r4.rc == 0, f"after the fix: exit {r4.rc}: {r4.output[-300:]!r}"
    assert dc.imap_count(dst) == 1
