"""Issue 15: the start of a run.  Where mail is likely, the IMAP login runs
beside the POP3 one (bridge/prelogin.c); where the last run found nothing,
a quiet poll logs in to POP3 alone, as before.  Read back from Dovecot's
log (its logins) and the IMAP mailbox."""

import re

from harness import assert_exactly_once, make_account, varied_messages

EX_NOPERM = 77
EARLY = "logging in beside POP3"


def imap_logins(dc, user):
    return [line for line in dc.logins(user) if "imap-login" in line]


def run(t, cfg):
    return t.bridge("-c", cfg, "-v", "run")


def run_counting(t, dc, dst, cfg):
    """A run, and how many times it logged in to IMAP as dst (the test's
    own read-backs log in too, so only the run's are counted)."""
    before = len(imap_logins(dc, dst))
    r = run(t, cfg)
    return r, len(imap_logins(dc, dst)) - before


def test_imap_login_beside_pop3_only_when_mail_is_likely(t):
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:4]]
    for raw in raws:
        dc.deliver(src, raw)
    cfg = t.config([dc.account("early", src, dst)])

    # First run: no ledger yet, so mail is likely: both logins at once.
    r1, n1 = run_counting(t, dc, dst, cfg)
    assert r1.rc == 0, f"first run exited {r1.rc}"
    assert EARLY in r1.stderr, "the first run did not log in to IMAP beside POP3"
    assert n1 == 1, f"{n1} IMAP logins for one run"
    assert_exactly_once(raws, dc.imap_messages(dst))

    # The run after one that found mail guesses "likely" again; it finds
    # nothing, so the one after that is a quiet poll: POP3 only.
    r2, n2 = run_counting(t, dc, dst, cfg)
    assert r2.rc == 0, f"second run exited {r2.rc}"
    assert EARLY in r2.stderr, "after a run that found mail, no early IMAP login"
    assert n2 == 1, f"the second run logged in to IMAP {n2} times"
    r3, n3 = run_counting(t, dc, dst, cfg)
    assert r3.rc == 0, f"third run exited {r3.rc}"
    assert EARLY not in r3.stderr, "a quiet poll after a quiet run logged in to IMAP early"
    assert n3 == 0, f"a quiet poll after a quiet run logged in to IMAP {n3} times"

    # New mail after quiet polls: the IMAP login follows POP3's, and the
    # message arrives all the same.
    more = [raw for _, raw in varied_messages(t.name + "-more")[:1]]
    dc.deliver(src, more[0])
    r4, n4 = run_counting(t, dc, dst, cfg)
    assert r4.rc == 0, f"fourth run exited {r4.rc}"
    assert EARLY not in r4.stderr, "the run after a quiet poll logged in early"
    assert n4 == 1, f"the fourth run logged in to IMAP {n4} times"
    assert_exactly_once(raws + more, dc.imap_messages(dst))


def test_early_login_refused_without_mail_is_no_error(t):
    """A refused IMAP password costs a run nothing when IMAP is not
    needed (as when the login came after POP3): exit 0, POP3 empty."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    acct = make_account("earlybad", dc.pop3_block(src),
                        dc.imap_block(dst, password="wrong-imap-secret-1"), keep=False)
    r = run(t, t.config([acct]))
    assert EARLY in r.stderr, "a first run did not log in to IMAP beside POP3"
    assert r.rc == 0, f"exit {r.rc} with no mail to move: {r.stderr[-400:]}"


def test_early_login_refused_with_mail_fails_once(t):
    """With mail waiting, the refused IMAP login is the run's failure (77,
    naming the account), tried once, not again later in the run; nothing
    is deleted."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [raw for _, raw in varied_messages(t.name)[:2]]
    for raw in raws:
        dc.deliver(src, raw)
    acct = make_account("earlybad", dc.pop3_block(src),
                        dc.imap_block(dst, password="wrong-imap-secret-2"), keep=False)
    r = run(t, t.config([acct]))
    assert EARLY in r.stderr
    assert r.rc == EX_NOPERM, f"exit {r.rc}, expected {EX_NOPERM}"
    assert re.search(r"earlybad.*imap", r.stderr), r.stderr[-400:]
    fails = [line for line in dc.log_text().splitlines()
             if f"user=<{dst}>" in line and "imap-login" in line and "auth failed" in line]
    assert len(fails) == 1, f"{len(fails)} refused IMAP logins in Dovecot's log, expected 1"
    assert dc.pop3_count(src) == len(raws)
    assert dc.imap_count(dst) == 0
