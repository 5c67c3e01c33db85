"""Gmail as the destination of `popbridge run` (issue 17): a real Dovecot
POP3 mailbox on 127.0.0.1, and the Gmail API's local fake
(tests/gmailfake.py, never Google) in its place.  Checked by reading back
what the fake stored: the bytes, the date, the labels, UNREAD; and that
nothing is imported twice when a run dies between a request and its reply,
when a daily limit stops it, when mail is there from Gmail's own fetcher,
or when runs are killed at random moments."""

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gmailfake import GmailFake  # noqa: E402
from harness import expected_internaldate, make_account, normalise, small_message  # noqa: E402

EX_OK, EX_TEMPFAIL = 0, 75


def fake_for(t):
    fake = GmailFake(t.tmp)
    fake.start()
    tok = t.tmp / "token.sh"
    tok.write_text(f"#!/bin/sh\necho {fake.token}\n")
    tok.chmod(0o700)
    return fake, str(tok)


def gmail_block(fake, tok, **extra):
    b = {"url": "gmail-api:" + fake.base, "user": fake.address,
         "oauth2_token_command": tok, "ca_file": fake.ca_file}
    b.update(extra)
    return b


def stored(fake):
    """{normalised bytes: [Message, ...]} of what the fake holds."""
    out = {}
    for m in list(fake.messages.values()):
        out.setdefault(normalise(m.raw), []).append(m)
    return out


def assert_once(fake, raws):
    got = stored(fake)
    missing = [i for i, r in enumerate(raws) if normalise(r) not in got]
    twice = {i: len(got[normalise(r)]) for i, r in enumerate(raws)
             if len(got.get(normalise(r), [])) > 1}
    extra = len(got) - len({normalise(r) for r in raws})
    assert not missing and not twice and extra == 0, \
        f"in Gmail: missing {missing[:10]}, more than once {twice}, {extra} unexpected"


def messages(t, n, seed=17):
    rng = random.Random(seed)
    return [small_message(i, rng, t.name) for i in range(n)]


def test_run_into_gmail_bytes_date_labels(t):
    dc = t.dovecot()
    src = t.user(dc, "s")
    fake, tok = fake_for(t)
    try:
        raws = messages(t, 12)
        for raw in raws:
            dc.deliver(src, raw)
        acct = make_account("gm", dc.pop3_block(src),
                            gmail_block(fake, tok, labels=["From GMX/2024"]), keep=False)
        cfg = t.config([acct])
        r = t.bridge("-c", cfg, "check")
        assert r.rc == EX_OK and "Gmail API" in r.stdout, f"check: exit {r.rc}"
        r = t.bridge("-c", cfg, "run", "--dry-run")
        assert r.rc == EX_OK and "12 to import into the Gmail API" in r.stdout, \
            f"dry run: exit {r.rc}"
        assert not fake.messages and dc.pop3_count(src) == len(raws), "a dry run changed things"
        r = t.bridge("-c", cfg, "-v", "run")
        assert r.rc == EX_OK, f"run exited {r.rc}"
        assert fake.token not in r.stderr + r.stdout, "the token reached the log"
        assert_once(fake, raws)
        lab = {x["name"] for x in fake.labels}
        for m in fake.messages.values():
            names = {fake.label_name(x) for x in m.label_ids}
            assert {"INBOX", "UNREAD", "From GMX/2024"} <= names, names
            assert m.params.get("internalDateSource") == "dateHeader", m.params
        assert "From GMX" in lab, "the parent of a nested label was not made"
        for raw in raws:
            m = stored(fake)[normalise(raw)][0]
            want = expected_internaldate(raw)
            assert abs(m.internal_date / 1000 - want.timestamp()) < 1, \
                f"internalDate {m.internal_date} is not the Date header's {want}"
        assert dc.pop3_count(src) == 0, "keep = false: POP3 should be empty"
        r = t.bridge("-c", cfg, "run")
        assert r.rc == EX_OK and len(fake.messages) == len(raws), "a rerun imported again"
    finally:
        fake.stop()


def test_cut_after_store_settles_by_search(t):
    """The import is stored, its reply never comes: the run ends 75, the
    message stays on POP3; the next run finds it in Gmail (rfc822msgid and
    content) instead of importing it again, and deletes it then."""
    dc = t.dovecot()
    src = t.user(dc, "s")
    fake, tok = fake_for(t)
    try:
        raws = messages(t, 3, seed=3)
        for raw in raws:
            dc.deliver(src, raw)
        cfg = t.config([make_account("gm", dc.pop3_block(src), gmail_block(fake, tok),
                                     keep=False)])
        fake.fault("import", cut="after_store")
        r = t.bridge("-c", cfg, "-v", "run")
        assert r.rc == EX_TEMPFAIL, f"a lost reply: exit {r.rc}, expected 75"
        n_imports = len(fake.imports())
        assert dc.pop3_count(src) == 3 - (len(fake.messages) - 1), \
            "a message whose import is in doubt was deleted from POP3"
        r = t.bridge("-c", cfg, "-v", "run")
        assert r.rc == EX_OK, f"second run exited {r.rc}"
        assert_once(fake, raws)
        assert len(fake.imports()) - n_imports <= 2, "the one in doubt was imported again"
        assert dc.pop3_count(src) == 0
    finally:
        fake.stop()


def test_daily_limit_leaves_mail_for_later(t):
    dc = t.dovecot()
    src = t.user(dc, "s")
    fake, tok = fake_for(t)
    try:
        raws = messages(t, 5, seed=5)
        for raw in raws:
            dc.deliver(src, raw)
        cfg = t.config([make_account("gm", dc.pop3_block(src), gmail_block(fake, tok),
                                     keep=False)])
        fake.fault("import", daily=True, retry_after=3600)
        r = t.bridge("-c", cfg, "-v", "run")
        assert r.rc == EX_TEMPFAIL, f"daily limit: exit {r.rc}, expected 75"
        assert "daily" in r.stderr.lower(), "the run does not say it hit the daily limit"
        left = dc.pop3_count(src)
        assert left == len(raws) - len(fake.messages), \
            f"{len(fake.messages)} in Gmail but {left} of {len(raws)} left on POP3"
        r = t.bridge("-c", cfg, "-v", "run")
        assert r.rc == EX_OK, f"after the limit: exit {r.rc}"
        assert_once(fake, raws)
        assert dc.pop3_count(src) == 0
    finally:
        fake.stop()


def test_mail_from_gmails_own_fetcher_is_adopted(t):
    """keep = true mail that Gmail's fetcher imported before it ended is
    found on first contact, not imported twice."""
    dc = t.dovecot()
    src = t.user(dc, "s")
    fake, tok = fake_for(t)
    try:
        raws = messages(t, 6, seed=6)
        for raw in raws:
            dc.deliver(src, raw)
        # The first four were fetched by Gmail long ago.
        for raw in raws[:4]:
            fake._store(normalise(raw), {"labelIds": ["INBOX"]},
                        {"internalDateSource": "dateHeader"})
        cfg = t.config([make_account("gm", dc.pop3_block(src), gmail_block(fake, tok),
                                     keep=True)])
        r = t.bridge("-c", cfg, "-v", "run")
        assert r.rc == EX_OK, f"run exited {r.rc}"
        assert_once(fake, raws)
        assert len(fake.imports()) == 2, f"{len(fake.imports())} imports, expected 2"
    finally:
        fake.stop()


def test_routed_gmail_and_imap_kill_loop(t):
    """A routed account: spam to the IMAP account's Junk, the rest to
    Gmail, keep = false; runs killed with SIGKILL at random moments, then a
    clean run: each message once where it belongs, POP3 empty."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    fake, tok = fake_for(t)
    try:
        rng = random.Random(41)
        raws = []
        for i, raw in enumerate(messages(t, 120, seed=41)):
            if i % 7 == 0:
                raw = raw.replace(b"Subject:", b"X-Spam-Flag: YES\nSubject:", 1)
            raws.append(raw)
            dc.deliver(src, raw)
        acct = make_account("mix", dc.pop3_block(src), dc.imap_block(dst), keep=False)
        acct["destinations"] = [dict(gmail_block(fake, tok), name="gmail")]
        acct["rules"] = [{"header": "X-Spam-Flag", "is": "YES", "mailbox": "Junk"},
                         {"to": "gmail"}]
        cfg = t.config([acct])
        kills = 0
        for _ in range(8):
            p = t.popen("-c", cfg, "run")
            # Measure, not assume: kill after a random share of a run's time.
            time.sleep(rng.uniform(0.05, 0.6))
            if p.poll() is None:
                p.kill()
                kills += 1
            p.wait()
            if dc.pop3_count(src) == 0:
                break
        t.note(f"{kills} runs killed")
        r = t.bridge("-c", cfg, "-v", "run")
        assert r.rc == EX_OK, f"final run exited {r.rc}"
        spam = [raw for i, raw in enumerate(raws) if i % 7 == 0]
        ham = [raw for i, raw in enumerate(raws) if i % 7 != 0]
        assert_once(fake, ham)
        junk = [m["body"] for m in dc.imap_messages(dst, "Junk")]
        assert sorted(junk) == sorted(normalise(r) for r in spam), \
            f"Junk holds {len(junk)} messages, expected the {len(spam)} spam once each"
        assert dc.imap_count(dst) == 0, "nothing should go to the IMAP INBOX"
        assert dc.pop3_count(src) == 0, "POP3 should be empty after the clean run"
    finally:
        fake.stop()
