"""Exactly once, whatever happens (the issue of that name).

Every message of the POP3 mailbox ends up in the IMAP mailbox exactly
once, bytes unchanged, and leaves the POP3 server (keep = false) only once
it is there -- also when an APPEND of a killed run reaches the server
after the rerun has looked for it, when two messages share their size and
first 8 KiB, when a UIDL is used again or by many messages at once, when
two accounts read one POP3 mailbox, when `migrate` or somebody else has
filled the destination before, when a message looks like a POP3 reply,
and when one message can never be fetched or stored (it is set aside
after three failed runs instead of being fetched at every poll for ever).

Outcomes are read back over IMAP (bytes, counts, flags) and POP3 (counts,
what the fake server holds, which UIDLs were asked for with RETR).  The
real Dovecot of tests/harness.py is source and destination; the fault
proxy (tests/faultproxy.py) in front of its IMAP makes an APPEND arrive
late or a link break at an exact point; the fake POP3 server
(tests/fakepop3.py) stands in only where Dovecot will not do it: UIDLs
chosen by the test, a UIDL used again, a RETR cut at every try.

Each test says at its top how it failed against the binary of commit
633b405 ("Before the fix: ...").
"""

import os
import re

import faultlib as fl
from daemonlib import status_json
from fakepop3 import FakePOP3
from faultproxy import FaultProxy, Rule
from harness import make_account, write_config
from migratelib import Migration, run_bridge
from oncelib import (APPEND_LINE, APPEND_OK_LINE, EX_CONFIG, EX_DATAERR, EX_OK,
                     EX_TEMPFAIL, Pop3Tap, assert_once, bodies, corpus, failure_entry,
                     header, imap_append, kill, label, own_message, same_instant,
                     stored, strip_caps, twins, wait_growth, wait_kept_back)

N_LATE = 40            # one MULTIAPPEND of 32 and one of 8


def tag_of(t):
    return f"{t.short}{os.getpid() % 1000}"


def run(t, cfg, *args, timeout=120):
    return t.bridge("-c", cfg, "-v", "run", *args, timeout=timeout)


def summary(r, name):
    return fl.summary(r.stderr, name)


def expect_rc(r, want, what):
    wants = want if isinstance(want, tuple) else (want,)
    assert r.rc in wants, (f"{what}: popbridge exited {r.rc}, expected "
                           f"{' or '.join(map(str, wants))}")


# ------------------------------------------------------------------ 1. a late APPEND
def _late_append(t, hide=(), second_killed=False):
    """Run 1's APPENDs are kept back by the proxy and run 1 is killed; run 2
    imports everything (or is killed too, after Dovecot stored its
    APPENDs but before it read the replies); then run 1's APPENDs reach
    Dovecot.  Run 3 must leave every message exactly once, the POP3
    mailbox empty and the user's own \\Deleted message where it was."""
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    tag = tag_of(t)
    raws = corpus(tag, N_LATE)
    for raw in raws:
        dc.deliver(src, raw)
    own = own_message(tag)
    imap_append(dc, dst, [own], flags=r"(\Deleted)")
    name = "late"
    px = FaultProxy(dc.imap_port, name="imap").start()
    try:
        px.rules = strip_caps(*hide) + [
            Rule("c2s", APPEND_LINE, at="start", action="delay", name="late APPEND")]
        via_proxy = t.config([fl.account(name, fl.pop3_block(dc, src),
                                         fl.imap_block(dc, dst, px.port), keep=False)],
                             name="proxy.conf")
        direct = t.config([fl.account(name, fl.pop3_block(dc, src),
                                      fl.imap_block(dc, dst), keep=False)],
                          name="direct.conf")

        # Run 1: its APPENDs stay in the proxy; killed once they are all in.
        p1 = t.popen("-c", via_proxy, "-v", "run", stderr_path=t.tmp / "run1.stderr")
        kept = wait_kept_back(px, p1, N_LATE)
        rc1 = p1.poll()
        kill(p1)
        assert px.fired_names().count("late APPEND") == 1, \
            f"run 1 sent no APPEND through the proxy (exit {rc1}): " + \
            (t.tmp / "run1.stderr").read_text(errors="replace")[-600:]
        assert rc1 is None, f"run 1 ended by itself (exit {rc1}) while its APPENDs were held"
        assert kept > 0, "the proxy holds no complete APPEND of run 1"
        t.note(f"run 1 killed with {kept} messages in APPENDs held by the proxy")
        assert dc.imap_count(dst) == 1, "run 1's APPENDs reached Dovecot before the release"
        assert dc.pop3_count(src) == N_LATE, "run 1 deleted messages on POP3"

        if not second_killed:
            r2 = run(t, direct)
            expect_rc(r2, EX_OK, "run 2 (straight to Dovecot)")
            assert_once("after run 2", raws, bodies(dc, dst), [own])
            assert dc.pop3_count(src) == 0, "run 2: keep = false but POP3 is not empty"
        else:
            # Run 2 through the proxy: Dovecot stores its APPENDs, their
            # replies are held, and it is killed before it reads them.
            # (Run 1's connection says nothing before the release, so the
            # first APPEND reply the proxy sees is run 2's.)
            px.rules.append(Rule("s2c", APPEND_OK_LINE, at="start", action="hold",
                                 hold="s2c", name="run 2's replies held"))
            p2 = t.popen("-c", via_proxy, "-v", "run", stderr_path=t.tmp / "run2.stderr")
            stored2 = wait_growth(lambda: dc.imap_count(dst) - 1, N_LATE, p2, interval=0.2)
            rc2 = p2.poll()
            kill(p2)
            assert "run 2's replies held" in px.fired_names(), \
                f"run 2 got no APPEND reply to hold (exit {rc2}): " + \
                (t.tmp / "run2.stderr").read_text(errors="replace")[-600:]
            assert rc2 is None, f"run 2 ended by itself (exit {rc2}) while its replies were held"
            assert stored2 > 0, "Dovecot stored none of run 2's APPENDs"
            t.note(f"run 2 killed with {stored2} messages stored by Dovecot")

        # Run 1's APPENDs reach Dovecot now, after run 2 looked for them.
        late = px.release(timeout=60)
        n_after = dc.imap_count(dst) - 1
        assert n_after > N_LATE, (
            f"the scenario did not reproduce: after the release the mailbox holds {n_after} "
            f"messages (expected more than {N_LATE}: run 1's late copies); Dovecot answered "
            f"{late[-300:]!r}")
        t.note(f"{n_after} messages in the mailbox after the late APPENDs")
    finally:
        px.stop()

    # Run 3, healthy: every message exactly once.
    r3 = run(t, direct)
    expect_rc(r3, EX_OK, "run 3 (after the late APPENDs)")
    msgs = dc.imap_messages(dst)
    assert_once("run 3", raws, [m["body"] for m in msgs], [own])
    mine = [m for m in msgs if m["body"] == own]
    assert mine and "\\Deleted" in mine[0]["flags"], \
        f"the user's own \\Deleted message lost its flag: {mine[0]['flags'] if mine else None}"
    doomed = [label(m["body"]) for m in msgs if m["body"] != own and "\\Deleted" in m["flags"]]
    assert not doomed, f"run 3 left {len(doomed)} imported messages flagged \\Deleted: {doomed[:6]}"
    assert dc.pop3_count(src) == 0, "run 3: keep = false but POP3 is not empty"
    if not re.search(r"duplicate", r3.stderr, re.I):
        t.note("run 3 logged no line about duplicates")


def test_late_append_after_rerun(t):
    """A killed run's MULTIAPPEND reaches Dovecot only after the rerun
    imported everything: the next run removes the late copies (its own,
    by UID; never the user's own \\Deleted message)."""
    # Before the fix: run 3: 81 messages in IMAP for 41 expected: 40 DUPLICATED (run 1's late copies stay; POP3 is empty, so run 3 never looks at IMAP)
    _late_append(t)


def test_late_append_second_run_killed(t):
    """The same, with run 2 killed too, after Dovecot stored its APPENDs
    and before it read their replies: both runs' copies are there when run
    3 comes; it keeps one of each."""
    # Before the fix: run 3: 81 messages in IMAP for 41 expected: 40 DUPLICATED (run 3 settles run 2's 40 as found; run 1's late copies stay)
    _late_append(t, second_killed=True)


def test_late_append_without_multiappend(t):
    """The late APPEND case on a server without MULTIAPPEND (the proxy
    hides it): 40 pipelined LITERAL+ APPENDs arrive late."""
    # Before the fix: run 3: 81 messages in IMAP for 41 expected: 40 DUPLICATED (run 1's 40 late LITERAL+ APPENDs stay)
    _late_append(t, hide=("MULTIAPPEND",))


def _no_uidplus_rules():
    """What a server without UIDPLUS looks like: no capability, no
    APPENDUID in the APPEND replies (Dovecot sends it regardless)."""
    return strip_caps("UIDPLUS") + [
        Rule("s2c", rb"\[APPENDUID \d+ [\d:,]+\] ", nth=0, action="replace", data=b"",
             once=False, name="no APPENDUID")]


def test_late_append_without_uidplus(t):
    """The late APPEND on a server without UIDPLUS: no UID EXPUNGE, and a
    plain EXPUNGE would take the user's own \\Deleted mail.  popbridge flags
    its duplicates \\Deleted and leaves them for the user's client to
    expunge: every message once among the messages not flagged \\Deleted,
    each late copy flagged, the user's own message untouched, and it says
    so in the log."""
    # Before the fix: 40 late copies stay unflagged beside the imported ones (DUPLICATED)
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    tag = tag_of(t)
    raws = corpus(tag, N_LATE)
    for raw in raws:
        dc.deliver(src, raw)
    own = own_message(tag)
    imap_append(dc, dst, [own], flags=r"(\Deleted)")
    late = FaultProxy(dc.imap_port, name="imap").start()
    plain = FaultProxy(dc.imap_port, name="imap").start()
    try:
        late.rules = _no_uidplus_rules() + [
            Rule("c2s", APPEND_LINE, at="start", action="delay", name="late APPEND")]
        plain.rules = _no_uidplus_rules()
        cfg1 = t.config([fl.account("nouid", fl.pop3_block(dc, src),
                                    fl.imap_block(dc, dst, late.port), keep=False)],
                        name="late.conf")
        cfg = t.config([fl.account("nouid", fl.pop3_block(dc, src),
                                   fl.imap_block(dc, dst, plain.port), keep=False)],
                       name="plain.conf")
        p1 = t.popen("-c", cfg1, "-v", "run", stderr_path=t.tmp / "run1.stderr")
        kept = wait_kept_back(late, p1, N_LATE)
        assert p1.poll() is None and kept > 0, "run 1 ended or sent nothing to keep back"
        kill(p1)
        r2 = run(t, cfg)
        expect_rc(r2, EX_OK, "run 2 (no UIDPLUS)")
        late.release(timeout=60)
        assert dc.imap_count(dst) - 1 > N_LATE, "the scenario did not reproduce"
        r3 = run(t, cfg)
        expect_rc(r3, EX_OK, "run 3 (no UIDPLUS)")
        assert "UIDPLUS" in r2.stderr + r3.stderr, \
            "no log line says why the duplicates are only flagged \\Deleted"
    finally:
        late.stop()
        plain.stop()
    msgs = dc.imap_messages(dst)
    live = [m["body"] for m in msgs if "\\Deleted" not in m["flags"]]
    assert_once("not flagged \\Deleted", raws, live)
    flagged = [m["body"] for m in msgs if "\\Deleted" in m["flags"] and m["body"] != own]
    assert all(b in [stored(r) for r in raws] for b in flagged), \
        "something other than a late copy was flagged \\Deleted"
    assert len(flagged) == kept, f"{len(flagged)} flagged \\Deleted, {kept} late copies"
    assert any(m["body"] == own and "\\Deleted" in m["flags"] for m in msgs), \
        "the user's own \\Deleted message is gone"
    assert dc.pop3_count(src) == 0


# ------------------------------------------------------------------ 3. equal size, equal 8 KiB
def _equal_prefix(t, hide):
    """Two messages of equal size and equal first 8 KiB, the IMAP link cut
    right after the tagged OK of the first APPEND (the second never
    reaches Dovecot); the rerun must give the stored copy to the right
    UIDL.  Both orders of the two UIDLs are tried."""
    dc = t.dovecot()
    tag = tag_of(t)
    a, b = twins(tag)
    for order, uidls in (("A's UIDL sorts first", ["pfx-1-A", "pfx-2-B"]),
                         ("B's UIDL sorts first", ["pfx-9-A", "pfx-1-B"])):
        dst = t.user(dc, "d")
        name = "twins"
        with FakePOP3([a, b], uidls=uidls) as srv:
            px = FaultProxy(dc.imap_port, name="imap").start()
            try:
                px.rules = strip_caps("MULTIAPPEND", *hide) + [
                    Rule("c2s", APPEND_LINE, nth=2, at="start", action="hold", hold="c2s",
                         name="second APPEND held"),
                    Rule("s2c", APPEND_OK_LINE, nth=1, at="end", action="cut",
                         name="cut after the first APPEND's OK")]
                cfg = t.config([make_account(name, srv.pop3_block(),
                                             fl.imap_block(dc, dst, px.port), keep=False)],
                               name="cut.conf")
                r1 = run(t, cfg)
                assert "cut after the first APPEND's OK" in px.fired_names(), \
                    f"{order}: the first APPEND's OK never came (exit {r1.rc})"
            finally:
                px.stop()
            got = bodies(dc, dst)
            assert stored(a) in got or stored(b) in got, (
                f"{order}: the scenario did not reproduce: after the cut IMAP holds "
                f"{[label(x) for x in got]}, expected the message of the first APPEND")
            assert len(got) == len(set(got)), \
                f"{order}: after the cut IMAP holds a message twice: {[label(x) for x in got]}"
            assert srv.wait_idle()
            assert all(raw in srv.remaining() for raw in (a, b) if stored(raw) not in got), \
                f"{order}: a message not in IMAP was deleted on POP3 (LOST)"
            t.note(f"{order}: cut run exited {r1.rc}")

            cfg = t.config([make_account(name, srv.pop3_block(), fl.imap_block(dc, dst),
                                         keep=False)], name="healthy.conf")
            r2 = run(t, cfg)
            expect_rc(r2, EX_OK, f"{order}: healthy rerun")
            assert_once(f"{order}: healthy rerun", [a, b], bodies(dc, dst))
            assert srv.wait_idle() and srv.remaining() == [], \
                f"{order}: keep = false but {len(srv.remaining())} left on POP3"


def test_equal_size_and_prefix_literal_plus(t):
    """Settling tells apart A and B (equal size, equal first 8 KiB) on a
    server with LITERAL+ but without MULTIAPPEND."""
    # Before the fix: B's UIDL sorts first: healthy rerun: 1 missing (B), A DUPLICATED: settling gave A's copy to B's UIDL and deleted B on POP3 (lost); the order where A's UIDL sorts first passes
    _equal_prefix(t, hide=())


def test_equal_size_and_prefix_sync_literals(t):
    """The same with neither MULTIAPPEND nor LITERAL+: one APPEND at a
    time with synchronising literals."""
    # Before the fix: B's UIDL sorts first: healthy rerun: 1 missing (B), A DUPLICATED, B deleted on POP3 (lost); the order where A's UIDL sorts first passes
    _equal_prefix(t, hide=("LITERAL+",))


# ------------------------------------------------------------------ 4. a UIDL used again
def _reused_uidl(t, same_size):
    dc = t.dovecot()
    dst = t.user(dc, "d")
    tag = tag_of(t)
    x = fl.fault_message(tag, 1, 2500)
    if same_size:
        # Y: X with other words of the same length (Subject, Message-ID, body).
        y = (x.replace(b"message 1\n", b"message 2\n", 1).replace(b"<f1.", b"<f2.", 1)
             .replace(b"X-Fault-Seq: " + tag.encode() + b"/1\n",
                      b"X-Fault-Seq: " + tag.encode() + b"/2\n", 1)
             .replace(b"alpha", b"ALPHA"))
        assert len(stored(y)) == len(stored(x)) and y != x
    else:
        y = fl.fault_message(tag, 2, 4000)
    name = "reused"
    with FakePOP3([x], uidls=["u1"]) as srv:
        cfg = t.config([make_account(name, srv.pop3_block(), fl.imap_block(dc, dst),
                                     keep=False)])
        r1 = run(t, cfg)
        expect_rc(r1, EX_OK, "run 1")
        assert srv.wait_idle() and srv.remaining() == [], "run 1 did not delete X on POP3"
        assert_once("run 1", [x], bodies(dc, dst))

        srv.add(y, "u1")                   # new mail, the same UIDL
        r2 = run(t, cfg)
        assert srv.wait_idle()
        got = bodies(dc, dst)
        assert not (srv.remaining() == [] and stored(y) not in got), (
            f"Y (a new message under the reused UIDL u1) was deleted on POP3 without being "
            f"imported: LOST (run 2: {summary(r2, name)} new/imported/failed/deleted)")
        expect_rc(r2, EX_OK, "run 2")
        assert_once("run 2", [x, y], got)
        assert srv.remaining() == [], "run 2: keep = false but Y is still on POP3"


def test_reused_uidl_new_message(t):
    """Run 1 imports X (UIDL u1) and deletes it; then the server gives
    the UIDL u1 to a new message Y: run 2 imports Y, then deletes it."""
    # Before the fix: Y was deleted on POP3 without being imported: LOST (run 2: "0 new, 0 imported, 0 failed, 1 deleted")
    _reused_uidl(t, same_size=False)


def test_reused_uidl_same_size(t):
    """The same with Y exactly as long as X."""
    # Before the fix: Y was deleted on POP3 without being imported: LOST (run 2: "0 new, 0 imported, 0 failed, 1 deleted")
    _reused_uidl(t, same_size=True)


# ------------------------------------------------------------------ 5. two accounts, one POP3 mailbox
N_TWO = 12


def test_two_accounts_keep(t):
    """Two accounts read one POP3 mailbox (keep = true) into two IMAP
    users: each destination gets every message once, and status --json
    counts each account's own imports."""
    # Before the fix: the second account's INBOX: 0 messages in IMAP for 12 expected ("office: 0 new, 0 imported": one ledger per POP3 mailbox, shared by both accounts)
    dc = t.dovecot()
    src, d1, d2 = t.user(dc, "s"), t.user(dc, "d"), t.user(dc, "d")
    raws = corpus(tag_of(t), N_TWO)
    for raw in raws:
        dc.deliver(src, raw)
    cfg = t.config([fl.account("home", fl.pop3_block(dc, src), fl.imap_block(dc, d1), keep=True),
                    fl.account("office", fl.pop3_block(dc, src), fl.imap_block(dc, d2),
                               keep=True)])
    r = run(t, cfg)
    expect_rc(r, EX_OK, "run of both accounts")
    assert_once("the first account's INBOX", raws, bodies(dc, d1))
    assert_once("the second account's INBOX", raws, bodies(dc, d2))
    assert dc.pop3_count(src) == N_TWO, "keep = true but messages are gone from POP3"
    st = status_json(t, cfg)
    for name in ("home", "office"):
        assert st[name]["imported_total"] == N_TWO, \
            f"status --json: {name}.imported_total = {st[name]['imported_total']}, " \
            f"its mailbox holds {N_TWO}"
    r = run(t, cfg)
    expect_rc(r, EX_OK, "second run of both accounts")
    assert_once("the first account's INBOX after a rerun", raws, bodies(dc, d1))
    assert_once("the second account's INBOX after a rerun", raws, bodies(dc, d2))


def test_two_accounts_delete(t):
    """Two accounts read one POP3 mailbox (keep = false) into two mailboxes
    of one IMAP user.  `run` of both: every message once in each mailbox,
    POP3 empty.  On a second POP3 mailbox, `run home` alone deletes
    nothing yet (the other account has none of it); then `run` of both
    finishes the job."""
    # Before the fix: both at once: Copy: 0 messages in IMAP for 12 expected: 12 missing (one ledger per POP3 mailbox: copy finds them all imported, home has deleted them)
    dc = t.dovecot()
    tag = tag_of(t)
    for step, first_alone in (("both at once", False), ("home alone first", True)):
        src, dst = t.user(dc, "s"), t.user(dc, "d")
        raws = corpus(f"{tag}{int(first_alone)}", N_TWO)
        for raw in raws:
            dc.deliver(src, raw)
        imap_append(dc, dst, [], mailbox="Copy", create=True)
        cfg = t.config([fl.account("home", fl.pop3_block(dc, src), fl.imap_block(dc, dst),
                                   keep=False),
                        fl.account("copy", fl.pop3_block(dc, src),
                                   fl.imap_block(dc, dst, mailbox="Copy"), keep=False)],
                       name=f"two{int(first_alone)}.conf")
        if first_alone:
            r = run(t, cfg, "home")
            expect_rc(r, EX_OK, f"{step}: run of the first account alone")
            assert_once(f"{step}: INBOX after `run home`", raws, bodies(dc, dst))
            left = dc.pop3_count(src)
            assert left == N_TWO, (f"{step}: `run home` alone deleted {N_TWO - left} of "
                                   f"{N_TWO} messages from POP3 (the other account, copy, "
                                   f"had none of them)")
        r = run(t, cfg)
        expect_rc(r, EX_OK, f"{step}: run of both accounts")
        assert_once(f"{step}: INBOX", raws, bodies(dc, dst))
        assert_once(f"{step}: Copy", raws, bodies(dc, dst, "Copy"))
        assert dc.pop3_count(src) == 0, \
            f"{step}: keep = false on both accounts, yet POP3 is not empty"


def test_two_accounts_mixed_keep_refused(t):
    """keep = true on one account and keep = false on another of the same
    POP3 mailbox contradict each other: `check -n` exits 78 naming both."""
    # Before the fix: check -n exited 0 ("configuration OK"), expected 78
    dc = t.dovecot()
    src, d1, d2 = t.user(dc, "s"), t.user(dc, "d"), t.user(dc, "d")
    cfg = t.config([fl.account("keeper", fl.pop3_block(dc, src), fl.imap_block(dc, d1),
                               keep=True),
                    fl.account("deleter", fl.pop3_block(dc, src), fl.imap_block(dc, d2),
                               keep=False)])
    r = t.bridge("-c", cfg, "check", "-n")
    assert r.rc == EX_CONFIG, f"check -n exited {r.rc}, expected {EX_CONFIG}"
    for name in ("keeper", "deleter"):
        assert name in r.output, f"check -n does not name the account {name!r}: {r.output!r}"


# ------------------------------------------------------------------ 6. migrate, then run
N_MIG = 20


def _mig_account(m, mailbox="Archive"):
    return m.dc.account("mig", m.src, m.dst, keep=True, mailbox=mailbox)


def test_migrate_then_run_same_state(t):
    """`popbridge -c CFG migrate ...` uses the config's state_dir; a `run`
    of the account that lives there imports nothing again, and `check`
    says "0 to import"."""
    # Before the fix: run after migrate: 40 messages in IMAP for 20 expected: 20 DUPLICATED (migrate kept its ledger under XDG_STATE_HOME, not in the config's state_dir)
    m = Migration(t)
    raws = corpus(tag_of(t), N_MIG)
    m.deliver(raws)
    cfg = t.config([_mig_account(m)])
    r = run_bridge(t, ["-c", cfg, *m.args(mailbox="Archive")], m.env())
    expect_rc(r, EX_OK, "migrate -c CFG")
    assert_once("Archive after migrate", raws, bodies(m.dc, m.dst, "Archive"))

    r = run(t, cfg)
    expect_rc(r, EX_OK, "run after migrate")
    assert_once("run after migrate", raws, bodies(m.dc, m.dst, "Archive"))
    s = summary(r, "mig")
    assert s is not None and s[1] == 0, f"run after migrate: summary {s}, expected 0 imported"
    r = t.bridge("-c", cfg, "check")
    expect_rc(r, EX_OK, "check after migrate")
    assert re.search(r"^mig: .*\b0 to import\b", r.stdout, re.M), \
        f"check does not say '0 to import' for the account: {r.stdout!r}"


def test_migrate_then_run_fresh_state_adopts(t):
    """migrate with its own --state-dir, then a run whose state_dir is new
    and empty: nothing is appended again (popbridge adopts the messages
    already in the destination with the same Message-ID, size and
    content)."""
    # Before the fix: run with a fresh state_dir: 40 messages in IMAP for 20 expected: 20 DUPLICATED (no adoption)
    m = Migration(t)
    raws = corpus(tag_of(t), N_MIG)
    m.deliver(raws)
    own_state = t.tmp / "migrate-state"
    r = m.run("--state-dir", own_state, mailbox="Archive")
    expect_rc(r, EX_OK, "migrate --state-dir")
    assert_once("Archive after migrate", raws, bodies(m.dc, m.dst, "Archive"))
    assert not t.state_dir.exists() or not any(t.state_dir.iterdir()), \
        "the run's state_dir is not empty before the run"
    cfg = t.config([_mig_account(m)])
    r = run(t, cfg)
    expect_rc(r, EX_OK, "run with a fresh state_dir")
    assert_once("run with a fresh state_dir", raws, bodies(m.dc, m.dst, "Archive"))
    r = run(t, cfg)
    expect_rc(r, EX_OK, "second run")
    assert_once("second run", raws, bodies(m.dc, m.dst, "Archive"))


def test_destination_filled_by_someone_else(t):
    """6 of 10 POP3 messages are already in the destination, appended by
    another client (the bytes popbridge would store); a first run with an
    empty state_dir appends only the 4 missing ones."""
    # Before the fix: first contact: 16 messages in IMAP for 10 expected: 6 DUPLICATED (no adoption)
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = corpus(tag_of(t), 10)
    for raw in raws:
        dc.deliver(src, raw)
    there = [raws[i] for i in (0, 2, 3, 5, 7, 8)]
    imap_append(dc, dst, [stored(raw) for raw in there])
    assert_once("the other client's APPENDs", there, bodies(dc, dst))
    cfg = t.config([fl.account("filled", fl.pop3_block(dc, src), fl.imap_block(dc, dst),
                               keep=True)])
    r = run(t, cfg)
    expect_rc(r, EX_OK, "first contact")
    assert_once("first contact", raws, bodies(dc, dst))
    r = run(t, cfg)
    expect_rc(r, EX_OK, "second run")
    assert_once("second run", raws, bodies(dc, dst))


def test_adopt_message_with_nul_bytes(t):
    """A message with NUL bytes goes as a literal8 (BINARY); Dovecot gives
    it back with 0x80 in BODY[].  A second first contact (fresh state_dir)
    must still recognise the copy the first run stored, and append
    nothing."""
    # Before the fix (content hash over the raw bytes): the NUL message was appended again
    dc = t.dovecot()
    dst = t.user(dc, "d")
    tag = tag_of(t)
    nul = (f"Date: Mon, 1 Jan 2024 10:00:00 +0000\nFrom: a@example.org\n"
           f"Subject: [{tag}] NUL bytes\nMessage-ID: <nul.{tag}@example.org>\n\n"
           ).encode() + b"NUL\x00here\x00\x00.\n"
    raws = corpus(tag, 3) + [nul]
    with FakePOP3(raws) as srv:
        for k in (1, 2):
            cfg = write_config(t.tmp / f"nul{k}.conf",
                               [make_account("nul", srv.pop3_block(), fl.imap_block(dc, dst),
                                             keep=True)], t.tmp / f"state{k}")
            r = run(t, cfg)
            expect_rc(r, EX_OK, f"first contact number {k}")
            assert dc.imap_count(dst) == len(raws), \
                f"first contact number {k}: {dc.imap_count(dst)} in IMAP for {len(raws)}"


def test_adoption_appends_only_the_missing(t):
    """First contact with a destination of 300 messages, 290 of which are
    the POP3 mailbox's (10 are the user's own): of the 300 POP3 messages
    exactly the 10 missing ones are appended."""
    # Before the fix: first contact: 600 messages in IMAP for 310 expected: 290 DUPLICATED (all 300 appended)
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    tag = tag_of(t)
    raws = corpus(tag, 300, small=(500, 1500))
    own = [stored(raw) for raw in corpus(tag + "own", 10, seed=2, small=(500, 1500))]
    for raw in raws:
        dc.deliver(src, raw)
    for i, raw in enumerate(raws):
        if i % 30 != 7:                    # 290 of them, as popbridge would store them
            dc.deliver(dst, stored(raw))
    for body in own:
        dc.deliver(dst, body)
    assert dc.imap_count(dst) == 300
    cfg = t.config([fl.account("adopt", fl.pop3_block(dc, src), fl.imap_block(dc, dst),
                               keep=True)])
    r = run(t, cfg, timeout=180)
    expect_rc(r, EX_OK, "first contact")
    got = bodies(dc, dst)
    assert_once("first contact", raws, got, own)
    assert len(got) == 310, f"{len(got) - 300} messages appended, expected 10"


# ------------------------------------------------------------------ 8. a first line like a POP3 reply
def test_first_line_like_a_pop3_reply(t):
    """Messages whose first line begins "+OK " or "-ERR " (not a header
    line), delivered into Dovecot with others: each is imported as a
    message, bytes unchanged, the others too, exit 0."""
    # Before the fix: run: popbridge exited 75, expected 0 ("the reply to RETR 2 holds another reply: the server answers out of step"; nothing imported)
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    tag = tag_of(t)
    raws = corpus(tag, 6)
    ok = (f"+OK 2150 octets follow, says the first line of this message\n"
          f"Date: Fri, 6 Sep 2024 07:00:00 +0000\nFrom: odd@example.org\n"
          f"Subject: [{tag}] first line +OK\nMessage-ID: <ok.{tag}@example.org>\n\n"
          f"+OK\n.\n-ERR inside the body\nend\n").encode()
    err = (f"-ERR no such message, says the first line of this one\n"
           f"Date: Fri, 6 Sep 2024 08:00:00 +0000\nFrom: odd@example.org\n"
           f"Subject: [{tag}] first line -ERR\nMessage-ID: <err.{tag}@example.org>\n\n"
           f"body\n").encode()
    order = raws[:1] + [ok] + raws[1:4] + [err] + raws[4:]
    for raw in order:
        dc.deliver(src, raw)
    cfg = t.config([fl.account("lookalike", fl.pop3_block(dc, src), fl.imap_block(dc, dst),
                               keep=False)])
    r = run(t, cfg)
    expect_rc(r, EX_OK, "run")
    assert_once("run", order, bodies(dc, dst))
    assert dc.pop3_count(src) == 0, "keep = false but POP3 is not empty"


# ------------------------------------------------------------------ 9. a RETR cut at every try
def test_retr_cut_every_time_set_aside_then_retry(t):
    """RETR of message 6 of 10 is cut half-way at every try (keep =
    false): the run ends 75 with messages 1..5 (fetched completely before
    the cut) imported; after at most 3 runs that fail on it message 6 is
    set aside and all the others arrive within 5 runs, message 6 still on
    the server; status --json lists it as set aside with its subject and
    sender; `retry` makes the next run fetch it, and, the fault gone, that
    run imports it."""
    # Before the fix: run 1: 5 of the 5 messages fetched completely before the cut are not in IMAP (exit 75, "10 new, 0 imported")
    dc = t.dovecot()
    dst = t.user(dc, "d")
    tag = tag_of(t)
    raws = [fl.fault_message(tag, i, 3000) for i in range(10)]
    k = 5                                  # message 6
    others = raws[:k] + raws[k + 1:]
    name = "cutk"
    with FakePOP3(raws) as srv:
        uidl_k = srv.remaining_uidls()[k]
        by_uidl = dict(zip(srv.remaining_uidls(), raws))
        srv.retr_fault_uidl = {uidl_k: "cut"}
        cfg = t.config([make_account(name, srv.pop3_block(), fl.imap_block(dc, dst),
                                     keep=False)])
        before = srv.sessions
        r = run(t, cfg)
        expect_rc(r, EX_TEMPFAIL, "run 1 (RETR of message 6 cut)")
        asked = srv.retrieved(since_session=before)
        assert uidl_k in asked, f"run 1 never asked for message 6 (asked for {asked})"
        complete = [by_uidl[u] for u in asked[:asked.index(uidl_k)]]
        got = bodies(dc, dst)
        missing = [raw for raw in complete if stored(raw) not in got]
        assert not missing, (f"run 1: {len(missing)} of the {len(complete)} messages fetched "
                             f"completely before the cut are not in IMAP")
        tries, runs = 1, 1
        while runs < 5 and not all(stored(raw) in got for raw in others):
            before = srv.sessions
            r = run(t, cfg)
            runs += 1
            if uidl_k in srv.retrieved(since_session=before):
                tries += 1
            t.note(f"run {runs}: exit {r.rc}, summary {summary(r, name)}")
            got = bodies(dc, dst)
        assert_once(f"after {runs} runs", others, got)
        assert tries <= 3, f"{tries} runs failed on message 6 before it was set aside"
        assert srv.wait_idle() and raws[k] in srv.remaining(), \
            "message 6 (never fetched whole) is gone from the POP3 server"

        f = failure_entry(t, cfg, name, uidl_k)
        assert f["set_aside"] is True, f"status --json: message 6 is not set aside: {f}"
        assert f["subject"] and header(raws[k], "Subject") in f["subject"], \
            f"status --json: subject {f['subject']!r}, the message's is {header(raws[k], 'Subject')!r}"
        assert f["from"] and header(raws[k], "From") in f["from"], \
            f"status --json: from {f['from']!r}, the message's is {header(raws[k], 'From')!r}"

        r = t.bridge("-c", cfg, "retry", name)
        expect_rc(r, EX_OK, "retry")
        srv.retr_fault_uidl = {}
        before = srv.sessions
        r = run(t, cfg)
        assert uidl_k in srv.retrieved(since_session=before), \
            "after `retry` the next run did not ask for message 6"
        expect_rc(r, EX_OK, "the run after retry, the fault gone")
        assert_once("the run after retry", raws, bodies(dc, dst))
        assert srv.wait_idle() and srv.remaining() == [], \
            f"keep = false but {len(srv.remaining())} left on POP3"


# ------------------------------------------------------------------ 10. repeated UIDLs
REPEATED_UIDLS = ["a", "a", "b", "a", "c", "c", "d", "e", "e", "f", "a", "g"]


def repeated_corpus(tag):
    """12 messages for REPEATED_UIDLS: 1, 2 and 11 of equal size (all "a"),
    5 and 6 of equal size ("c"), 8 and 9 byte-identical ("e")."""
    sizes = [900, 900, 1500, 2100, 1300, 1300, 700, 1800, None, 2500, 900, 1100]
    out = []
    for i, n in enumerate(sizes):
        if n is None:
            out.append(out[-1])
            continue
        head = (f"Date: Thu, {i + 1:02d} Aug 2024 09:00:00 +0000\n"
                f"From: list{i:02d}@example.org\n"
                f"Subject: [{tag}] repeated UIDL, message {i:02d}\n"
                f"Message-ID: <r{i:02d}.{tag}@example.org>\n"
                f"X-Fault-Seq: {tag}/{i:02d}\n\n")
        body = ""
        while len(head) + len(body) + 77 <= n:
            body += f"{i:02d} " + "text " * 14 + "\n"
        body += "z" * (n - len(head) - len(body) - 1) + "\n"
        out.append((head + body).encode())
    assert len({len(stored(out[j])) for j in (0, 1, 10)}) == 1 and out[0] != out[1]
    assert len(stored(out[4])) == len(stored(out[5])) and out[4] != out[5]
    assert out[7] == out[8]
    return out


def test_repeated_uidls_keep(t):
    """A server that gives one UIDL to many messages (popa3d hashes a few
    headers): every message once (two byte-identical ones: two copies),
    nothing again on reruns, nor after one of the "a" messages is deleted
    on the server by someone else (keep = true)."""
    # Before the fix: run 1: popbridge exited 75, expected 0 ("messages 1 and 2 have the same UIDL"; nothing imported, at every run)
    dc = t.dovecot()
    dst = t.user(dc, "d")
    raws = repeated_corpus(tag_of(t))
    name = "popa3d"
    with FakePOP3(raws, uidls=REPEATED_UIDLS) as srv:
        cfg = t.config([make_account(name, srv.pop3_block(), fl.imap_block(dc, dst),
                                     keep=True)])
        r = run(t, cfg)
        expect_rc(r, EX_OK, "run 1")
        assert_once("run 1", raws, bodies(dc, dst))
        r = run(t, cfg)
        expect_rc(r, EX_OK, "run 2")
        assert_once("run 2", raws, bodies(dc, dst))
        s = summary(r, name)
        assert s is not None and s[1] == 0, f"run 2: summary {s}, expected 0 imported"
        srv.remove(index=0)                # the first "a": every later "a" moves up
        r = run(t, cfg)
        expect_rc(r, EX_OK, "run 3, one message deleted on the server")
        assert_once("run 3, one message deleted on the server", raws, bodies(dc, dst))
        assert srv.remaining() == raws[1:], "keep = true but messages were deleted"


def test_repeated_uidls_delete(t):
    """The same mailbox with keep = false: every message once, the POP3
    mailbox empty."""
    # Before the fix: run 1: popbridge exited 75, expected 0 ("messages 1 and 2 have the same UIDL"; nothing imported)
    dc = t.dovecot()
    dst = t.user(dc, "d")
    raws = repeated_corpus(tag_of(t))
    name = "popa3d"
    with FakePOP3(raws, uidls=REPEATED_UIDLS) as srv:
        cfg = t.config([make_account(name, srv.pop3_block(), fl.imap_block(dc, dst),
                                     keep=False)])
        r = run(t, cfg)
        expect_rc(r, EX_OK, "run 1")
        assert_once("run 1", raws, bodies(dc, dst))
        assert srv.wait_idle() and srv.remaining() == [], \
            f"keep = false but {len(srv.remaining())} left on POP3"
        r = run(t, cfg)
        expect_rc(r, EX_OK, "run 2")
        assert_once("run 2", raws, bodies(dc, dst))


# ------------------------------------------------------------------ 11. a message the IMAP server refuses
def big_message(tag, size):
    head = (f"Date: Mon, 1 Jul 2024 12:00:00 +0000\n"
            f"From: Big Sender <big@example.org>\n"
            f"Subject: [{tag}] a big one of {size} bytes\n"
            f"Message-ID: <big.{size}.{tag}@example.org>\n\n")
    line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n"
    return (head + line * (size // len(line))).encode()


def test_refused_message_set_aside_then_retry(t):
    """A message Dovecot refuses (over quota_max_mail_size) is tried on the
    first runs, set aside after 3 failed runs and then no longer fetched,
    while new mail still flows; status --json lists it with its subject,
    sender, date, attempts and the server's reason; `retry` makes the next
    run fetch it again."""
    # Before the fix: run 4: the message refused in 3 runs was fetched again (it is fetched and refused at every run)
    dc = t.dovecot(quota_max_mail_size="100K")
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    tag = tag_of(t)
    big = big_message(tag, 150_000)
    fresh = iter(corpus(tag, 40, small=(600, 3000)))
    expected = [next(fresh) for _ in range(3)]
    for raw in expected[:1] + [big] + expected[1:]:
        dc.deliver(src, raw)
    big_uidl = [u for u, body in dc.pop3_messages(src) if body == stored(big)]
    assert len(big_uidl) == 1
    big_uidl = big_uidl[0]
    name = "refused"
    tap = Pop3Tap(dc)
    try:
        cfg = t.config([fl.account(name, fl.pop3_block(dc, src, tap.port),
                                   fl.imap_block(dc, dst), keep=False)])

        def one_run(label):
            if label != "run 1":
                for raw in [next(fresh), next(fresh)]:      # new mail keeps coming
                    dc.deliver(src, raw)
                    expected.append(raw)
            before = tap.sessions()
            r = run(t, cfg)
            asked = big_uidl in tap.retrieved(before)
            t.note(f"{label}: exit {r.rc}, summary {summary(r, name)}, "
                   f"{'fetched' if asked else 'did not fetch'} the big message")
            assert_once(label, expected, bodies(dc, dst))
            return r, asked

        r, asked = one_run("run 1")
        expect_rc(r, EX_DATAERR, "run 1 (one message refused)")
        assert asked, "run 1 did not fetch the message that is refused"
        tries, runs = 1, 1
        while tries < 3 and runs < 6:
            runs += 1
            _, asked = one_run(f"run {runs}")
            tries += asked
        assert tries == 3, f"the refused message was tried {tries} times in {runs} runs, " \
                           f"expected 3 tries on the first runs"
        for _ in range(2):
            runs += 1
            _, asked = one_run(f"run {runs}")
            assert not asked, f"run {runs}: the message refused in 3 runs was fetched again"
        left = dc.pop3_messages(src)
        assert [body for _, body in left] == [stored(big)], \
            f"POP3 should hold only the refused message, it holds {len(left)}"

        f = failure_entry(t, cfg, name, big_uidl)
        assert f["set_aside"] is True, f"status --json: the message is not set aside: {f}"
        assert isinstance(f["attempts"], int) and f["attempts"] >= 3, \
            f"status --json: attempts = {f['attempts']!r}, expected 3 or more"
        assert f["subject"] == header(big, "Subject"), f"status --json: subject {f['subject']!r}"
        assert f["from"] and "big@example.org" in f["from"], f"status --json: from {f['from']!r}"
        assert f["date"] and same_instant(f["date"], header(big, "Date")), \
            f"status --json: date {f['date']!r}, the message's is {header(big, 'Date')!r}"
        assert re.search(r"LIMIT|larger|size", f["error"] or "", re.I), \
            f"status --json: error {f['error']!r} does not carry the server's reason"

        r = t.bridge("-c", cfg, "retry", name)
        expect_rc(r, EX_OK, "retry")
        runs += 1
        _, asked = one_run(f"run {runs} (after retry)")
        assert asked, "after `retry` the next run did not fetch the refused message again"
    finally:
        tap.stop()


def test_long_appenduid_set_is_read_whole(t):
    """A MULTIAPPEND of 32 whose APPENDUID names 32 UIDs that are not
    contiguous (10001,10003,...,10063: 200-odd bytes) is read whole: the
    ledger records 10063 for the 32nd message.  (The proxy rewrites
    Dovecot's contiguous set; the ledger is read directly.)
    Before the fix: the response code's argument was cut at 191 bytes, and
    the cut set still gave 32 UIDs: the 32nd message was recorded as 100."""
    import sqlite3
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = corpus(tag_of(t), 32)
    for raw in raws:
        dc.deliver(src, raw)
    uids = ",".join(str(10001 + 2 * i) for i in range(32))
    px = FaultProxy(dc.imap_port, name="imap").start()
    try:
        # The replacement names the mailbox's UIDVALIDITY: read it first.
        c = dc.imap(dst)
        typ, data = c.status("INBOX", "(UIDVALIDITY)")
        c.logout()
        v = re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1)
        px.rules = [Rule("s2c", rb"\[APPENDUID " + v + rb" 1:32\]", action="replace",
                         data=b"[APPENDUID " + v + b" " + uids.encode() + b"]",
                         name="long set")]
        cfg = t.config([fl.account("longset", fl.pop3_block(dc, src),
                                   fl.imap_block(dc, dst, px.port), keep=True)])
        r = run(t, cfg)
        expect_rc(r, EX_OK, "run")
        assert "long set" in px.fired_names(), "Dovecot's APPENDUID 1:32 was not seen"
    finally:
        px.stop()
    dbs = list(t.state_dir.glob("*.db"))
    assert len(dbs) == 1
    db = sqlite3.connect(f"file:{dbs[0]}?mode=ro", uri=True)
    got = sorted(u for (u,) in db.execute("SELECT uid FROM msg WHERE state = 2"))
    db.close()
    assert got == [10001 + 2 * i for i in range(32)], \
        f"the ledger's UIDs are {got[:3]}...{got[-3:]}, want 10001,10003,...,10063"
