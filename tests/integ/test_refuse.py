"""Messages the IMAP server refuses: per-message size limit and quota."""

import random
import re

from harness import assert_exactly_once, normalise, small_message

EX_TEMPFAIL = 75


def big_message(tag, size):
    head = (f"Date: Mon, 1 Jul 2024 12:00:00 +0000\n"
            f"From: big@example.org\n"
            f"Subject: [{tag}] a big one of {size} bytes\n"
            f"Message-ID: <big.{size}.{tag}@example.org>\n\n")
    line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n"
    return (head + line * (size // len(line))).encode()


def test_message_over_size_limit_stays_on_pop3(t):
    # Dovecot answers the big APPEND with
    #   NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration
    dc = t.dovecot(quota_max_mail_size="100K")
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    rng = random.Random(7)
    small = [small_message(i, rng, t.name) for i in range(5)]
    big = big_message(t.name, 150_000)
    for raw in small[:3] + [big] + small[3:]:
        dc.deliver(src, raw)
    cfg = t.config([dc.account("lim", src, dst, keep=False)])

    r = t.bridge("-c", cfg, "-v", "run")
    assert_exactly_once(small, dc.imap_messages(dst))
    left = dc.pop3_messages(src)
    assert len(left) == 1 and left[0][1] == normalise(big), \
        f"POP3 should keep exactly the refused message, it has {len(left)}"
    assert r.rc != 0, "a message was refused but popbridge exited 0"
    assert any("lim" in line and re.search(r"LIMIT|larger|refus|reject|too (large|big)|size", line, re.I)
               for line in r.stderr.splitlines()), "the refused message is not reported on stderr"

    # Again: still not imported, still kept, nothing duplicated.
    t.bridge("-c", cfg, "-v", "run")
    assert_exactly_once(small, dc.imap_messages(dst))
    left = dc.pop3_messages(src)
    assert len(left) == 1 and left[0][1] == normalise(big), "second run lost the refused message"


def test_quota_exceeded_stops_account(t):
    # Dovecot answers an APPEND over quota_rule = *:storage=200K with
    #   NO [OVERQUOTA] Quota exceeded (mailbox for user is full)
    dc = t.dovecot(quota_storage="200K")
    other = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [big_message(f"{t.name}-{i}", 70_000) for i in range(5)]
    for raw in raws:
        dc.deliver(src, raw)
    s2, d2 = t.user(other, "s"), t.user(other, "d")
    rng = random.Random(12)
    other_raws = [small_message(i, rng, t.name) for i in range(2)]
    for raw in other_raws:
        other.deliver(s2, raw)
    cfg = t.config([dc.account("full", src, dst, keep=False),
                    other.account("next", s2, d2)])

    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == EX_TEMPFAIL, f"exit {r.rc}, expected {EX_TEMPFAIL} (quota is temporary)"
    assert dc.pop3_count(src) == len(raws), \
        f"over quota, popbridge deleted {len(raws) - dc.pop3_count(src)} POP3 messages"
    inbox = dc.imap_messages(dst)
    assert len(inbox) < len(raws), "everything fit, the quota did not bite"
    bodies = [m["body"] for m in inbox]
    assert len(set(bodies)) == len(bodies), "duplicates in INBOX"
    assert set(bodies) <= {normalise(r_) for r_ in raws}, "unexpected message in INBOX"
    assert any("full" in line and re.search(r"quota", line, re.I) for line in r.stderr.splitlines()), \
        "the quota error is not reported with the account name"
    assert_exactly_once(other_raws, other.imap_messages(d2), "INBOX of the next account")
