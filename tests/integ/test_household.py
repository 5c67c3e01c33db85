"""A household's mailboxes that don't fill up (issue 13): delete_after
keeps mail on the POP3 server for a while and then deletes what was
imported long enough ago; max_size leaves messages over a size on the
server, reported; checked against the private Dovecot."""

import random
import re
import sqlite3

from harness import assert_exactly_once, make_account, small_message

EX_CONFIG = 78


def _age(state_dir, days, which):
    """Make the imported rows whose UIDL `which` picks look imported
    `days` ago (the test cannot wait days)."""
    (db,) = list(state_dir.glob("*.db"))
    con = sqlite3.connect(str(db))
    rows = con.execute("SELECT id, uidl FROM msg WHERE state = 2").fetchall()
    import time
    when = int(time.time()) - days * 86400 - 60
    for rid, uidl in rows:
        if which(uidl):
            con.execute("UPDATE msg SET imported_at = ? WHERE id = ?", (when, rid))
    con.commit()
    con.close()
    return len(rows)


def test_delete_after_days(t):
    """keep = true with delete_after = 7: nothing is deleted at first; a
    message imported 8 days ago is deleted from POP3 at the next run, one
    imported 6 days ago stays; the IMAP copies stay, each once.  Before
    the change: delete_after was an unknown key (78)."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    rng = random.Random(21)
    raws = [small_message(i, rng, t.name) for i in range(6)]
    for raw in raws:
        dc.deliver(src, raw)
    cfg = t.config([dc.account("da", src, dst, keep=True, delete_after=7)])
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 0, f"first run: exit {r.rc}: {r.output[-300:]}"
    assert dc.pop3_count(src) == 6, "delete_after deleted at once"
    uidls = sorted(u for u, _ in dc.pop3_messages(src))
    old = set(uidls[:2])
    assert _age(t.state_dir, 8, lambda u: u in old) == 6
    _age(t.state_dir, 6, lambda u: u not in old)
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 0, f"second run: exit {r.rc}: {r.output[-300:]}"
    left = sorted(u for u, _ in dc.pop3_messages(src))
    assert left == sorted(set(uidls) - old), f"left on POP3: {left}, gone should be {old}"
    assert_exactly_once(raws, dc.imap_messages(dst))
    # A third run changes nothing and imports nothing again.
    r = t.bridge("-c", cfg, "run")
    assert r.rc == 0 and dc.pop3_count(src) == 4
    assert_exactly_once(raws, dc.imap_messages(dst))


def test_delete_after_needs_keep(t):
    """delete_after with keep = false is a config error naming the key."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    cfg = t.config([dc.account("dk", src, dst, keep=False, delete_after=3)])
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_CONFIG and "delete_after" in r.output, (r.rc, r.output)


def test_max_size_leaves_big_messages(t):
    """max_size = 20000: a 60 KB message is not fetched, stays on the POP3
    server and is reported; the others arrive; exit 0; a rerun imports
    nothing and reports it again.  Before the change: max_size was an
    unknown key (78)."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    rng = random.Random(22)
    small = [small_message(i, rng, t.name) for i in range(4)]
    big = (f"Date: Mon, 1 Jul 2024 12:00:00 +0000\nFrom: big@example.org\n"
           f"Subject: [{t.name}] big\nMessage-ID: <big.{t.name}@example.org>\n\n"
           + "0123456789" * 6000 + "\n").encode()
    for raw in small[:2] + [big] + small[2:]:
        dc.deliver(src, raw)
    cfg = t.config([dc.account("ms", src, dst, keep=False, max_size=20000)])
    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == 0, f"exit {r.rc}: {r.output[-400:]}"
    assert re.search(r"ms: 1 message over max_size \(.*\) left on the POP3 server: "
                     r"message \d+ \(UIDL \S+, ", r.output), r.output[-600:]
    assert_exactly_once(small, dc.imap_messages(dst))
    assert dc.pop3_count(src) == 1, "the big message did not stay on POP3 alone"
    r = t.bridge("-c", cfg, "-v", "run")
    assert r.rc == 0 and "over max_size" in r.output
    assert dc.imap_count(dst) == 4
