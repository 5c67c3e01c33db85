"""Faults: nothing lost, nothing twice (issue 6).

Each test imports a corpus into the private Dovecot while something goes
wrong -- a connection cut in the middle of a RETR, of an APPEND literal,
after the APPEND but before its reply, between DELE and QUIT; a stalled
server; IMAP refusals (OVERQUOTA, TRYCREATE, LIMIT, BAD, BYE); a full or
read-only state_dir; kill -9 -- and then checks the IMAP mailbox and the
POP3 mailbox message by message:

  nothing lost    every message is in IMAP or still on POP3 (keep = false:
                  a message is gone from POP3 only if it is in IMAP);
  nothing twice   no message is in IMAP twice, none is changed.

Then popbridge runs again on a healthy path (straight to Dovecot, same
ledger) and every message must be in IMAP exactly once, none left on POP3.

What Dovecot stored of a fault run is counted only once it has ended the
target user's IMAP sessions: an APPEND it had read whole may be committed
after popbridge is gone.  Whether it is depends on timing (a connection
that is cut or reset may also take unread commands with it), so a test
that expects a count measures it: which APPEND commands reached Dovecot
whole (the proxy's transcript), and which of them it stored -- always the
first j of them, for some j, a MULTIAPPEND whole or not at all -- and the
healthy run must then settle exactly what was stored.

Faults a real server will not make on demand come from tests/faultproxy.py,
a TCP proxy in front of the real Dovecot (popbridge reaches it in plaintext,
tls = "none"); quota, LIMIT and TRYCREATE are Dovecot's own answers.
"""

import os
import re
import signal
import sqlite3
import subprocess
import time

import faultlib as fl
from faultlib import EX_DATAERR, EX_OK, EX_TEMPFAIL
from faultproxy import FaultProxy, Rule, _CommandSplitter
from harness import InterruptLoop, assert_exactly_once

N = 70                 # three batches: 32, 32, 6
BIG = (5, 44)          # over the 128 KiB in-memory spool
APPEND_OK = rb"^\S+ OK \[APPENDUID"
OCTETS = rb"^\+OK \d+ octets\r\n"


# ------------------------------------------------------------------ helpers
class Case:
    """One fault scenario: a source and a target user with a corpus, proxies
    in front of Dovecot's POP3 and IMAP, configs for the faulty and the
    healthy path."""

    def __init__(self, t, dc=None, n=N, big=BIG, keep=False, mailbox="INBOX",
                 name="flt", deliver=True, imap_commands=None, small=(600, 6000)):
        self.t = t
        self.dc = dc or t.dovecot()
        self.src, self.dst = t.user(self.dc, "s"), t.user(self.dc, "d")
        self.raws = fl.corpus(f"{t.short}{os.getpid() % 1000}", n, big=big, small=small)
        self.keep = keep
        self.mailbox = mailbox
        self.name = name
        if deliver:
            for raw in self.raws:
                self.dc.deliver(self.src, raw)
        self.pp = FaultProxy(self.dc.pop3_port, name="pop3", keep_bytes=1 << 26).start()
        # The whole of what passes, to tell which APPENDs reached Dovecot.
        self.ip = FaultProxy(self.dc.imap_port, name="imap", commands=imap_commands,
                             keep_bytes=1 << 26).start()
        self.others = []
        self.soft = []          # failed expectations that let the test go on

    def expect_rc(self, r, want, what):
        """Like fl.assert_rc, but the test goes on (to the no-loss checks
        and the healthy run) and fails at the end."""
        try:
            fl.assert_rc(r, want, what)
        except AssertionError as e:
            self.soft.append(str(e))

    def expect_error(self, r, name, pattern, what):
        try:
            fl.assert_error(r, name, pattern, what)
        except AssertionError as e:
            self.soft.append(str(e))

    def note_run(self, r, label):
        """Note what the run said about the account (its errors, summary)."""
        errs = fl.account_lines(r.stderr, self.name)
        self.t.note(f"{label}: exit {r.rc} after {r.seconds:.1f} s; summary "
                    f"{fl.summary(r.stderr, self.name)}; "
                    + (f"last error: {errs[-1].split(': ', 1)[-1][:200]}" if errs else "no error"))

    def expect(self, cond, msg):
        if not cond:
            self.soft.append(msg)

    def close(self):
        self.pp.stop()
        self.ip.stop()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close()
        if exc_type is None and self.soft:
            raise AssertionError("; ".join(self.soft) + " (the no-loss checks and the "
                                 "healthy run passed)")
        return False

    def faulty_account(self, **extra):
        return fl.account(self.name, fl.pop3_block(self.dc, self.src, self.pp.port),
                          fl.imap_block(self.dc, self.dst, self.ip.port, self.mailbox),
                          keep=self.keep, **extra)

    def healthy_account(self, **extra):
        return fl.account(self.name, fl.pop3_block(self.dc, self.src),
                          fl.imap_block(self.dc, self.dst, mailbox=self.mailbox),
                          keep=self.keep, **extra)

    def bystander(self, n=5):
        """A second, healthy account (its own users, no proxy) for the
        same config: it must import whatever happens to the first."""
        src, dst = self.t.user(self.dc, "s"), self.t.user(self.dc, "d")
        raws = fl.corpus(f"{self.t.short}by{len(self.others)}", n)
        for raw in raws:
            self.dc.deliver(src, raw)
        acct = fl.account(f"{self.name}by{len(self.others)}", fl.pop3_block(self.dc, src),
                          fl.imap_block(self.dc, dst), keep=False)
        self.others.append((acct, src, dst, raws))
        return acct

    def run(self, accounts, conf, extra="", verbose="-v", timeout=120):
        cfg = self.t.config(accounts, extra=extra, name=conf)
        return fl.run_measured(self.t, "-c", cfg, verbose, "run", timeout=timeout)

    def fault_run(self, extra="", accounts=None, **kw):
        return self.run(accounts or [self.faulty_account()], "fault.conf", extra=extra, **kw)

    def wait_sessions(self):
        """Wait until Dovecot has ended every IMAP session of the target
        user: then what it will ever store of the fault run is stored."""
        assert self.dc.wait_sessions_ended(self.dst, 120, ("imap",)), (
            "Dovecot still has IMAP sessions of the target user 120 s after the fault run: "
            f"{self.dc.open_sessions(self.dst, ('imap',))}")

    def check_no_loss(self, what="after the fault"):
        self.wait_sessions()
        return fl.check_no_loss(self.t, self.raws, fl.imap_bodies(self.dc, self.dst, self.mailbox),
                                fl.pop3_bodies(self.dc, self.src), self.keep, what)

    def appends(self):
        """The APPEND commands that reached Dovecot whole through the IMAP
        proxy, in order, each as the list of corpus numbers it carried (a
        MULTIAPPEND several).  A command cut short is not among them."""
        out = []
        for sess in self.ip.sessions:
            sent = bytes(sess.transcript["c2s"])
            assert len(sent) == sess.forwarded["c2s"], "the proxy's transcript is cut short"
            for kind, cmd in _CommandSplitter().feed(sent):
                if kind == "cmd" and cmd.verb == "APPEND":
                    out.append([fl.seq_of(lit)[1] for lit in cmd.literals if fl.seq_of(lit)])
        return out

    def stored_prefix(self, in_imap, what):
        """Dovecot runs commands in order and stores a MULTIAPPEND whole or
        not at all, so what it stored must be the messages of the first j
        APPEND commands that reached it whole, for some j.  Returns
        (j, the APPEND commands, messages stored)."""
        appends = self.appends()
        stored = {n for (_, n), k in in_imap.items() if k}
        acc = set()
        for j in range(len(appends) + 1):
            if j:
                acc |= set(appends[j - 1])
            if stored == acc:
                self.t.note(f"{what}: {len(appends)} APPEND commands reached Dovecot whole "
                            f"({[len(a) for a in appends][:12]} messages); it stored the "
                            f"first {j} of them, {len(stored)} messages")
                return j, appends, len(stored)
        raise AssertionError(
            f"{what}: IMAP holds {len(stored)} messages ({sorted(stored)[:12]}...), which are "
            f"not the messages of the first APPEND commands that reached Dovecot whole "
            f"({[a[:3] + ['...'] if len(a) > 3 else a for a in appends][:6]})")

    def fetched_whole(self):
        """The corpus numbers of the messages whose RETR reply reached
        popbridge whole through the POP3 proxy (the "+OK n octets" line, the
        dot-stuffed text and the terminating ".", in which a lone "." line
        cannot occur)."""
        out = set()
        for sess in self.pp.sessions:
            got = bytes(sess.transcript["s2c"])
            assert len(got) == sess.forwarded["s2c"], "the proxy's transcript is cut short"
            for m in re.finditer(OCTETS, got, re.M):
                end = got.find(b"\r\n.\r\n", m.end() - 2)
                if end >= 0 and fl.seq_of(got[m.end():end + 2]):
                    out.add(fl.seq_of(got[m.end():end + 2])[1])
        return out

    def stored_of_fetched(self, in_imap, what, rst=False):
        """A POP3 fault: what Dovecot stored must be a whole prefix of the
        APPENDs that reached it (stored_prefix) and only messages that
        popbridge fetched whole.  The README: "the messages fetched whole
        before it are imported; the one it broke on fails" -- so without a
        RST (which may take bytes popbridge had not read yet with it), all
        of those.  Returns the number stored."""
        j, appends, stored = self.stored_prefix(in_imap, what)
        whole = self.fetched_whole()
        got = {n for (_, n), k in in_imap.items() if k}
        assert got <= whole, (f"{what}: messages in IMAP that never reached popbridge whole: "
                              f"{sorted(got - whole)[:8]}")
        if not rst:
            self.expect(got == whole,
                        f"{what}: {len(whole)} messages were fetched whole before the fault, "
                        f"{len(got)} of them imported (all are to be)")
        self.t.note(f"{what}: {len(whole)} messages fetched whole, {len(got)} imported")
        return stored

    def replies_forwarded(self, pattern=APPEND_OK):
        """How many tagged APPEND OKs the proxy passed on to popbridge."""
        return sum(len(re.findall(pattern, bytes(s.transcript["s2c"]), re.M))
                   for s in self.ip.sessions)

    def check_others(self):
        for acct, src, dst, raws in self.others:
            fl.check_exactly_once(self.t, raws, fl.imap_bodies(self.dc, dst),
                                  fl.pop3_bodies(self.dc, src),
                                  what=f"bystander account {acct['name']}")

    def settle_expected(self, stored):
        """What the healthy run must settle, read from the fault run's
        ledger (how many batches were in flight when the fault came is
        the window's choice, sized as the run goes): every row left
        pending, of which found in IMAP all that is there (stored) but
        the rows recorded imported."""
        (db,) = list(self.t.state_dir.glob(f"*{self.src}*.db"))
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            pending, imported = (con.execute(
                f"SELECT count(*) FROM msg WHERE state = {k}").fetchone()[0] for k in (1, 2))
        finally:
            con.close()
        self.t.note(f"fault run's ledger: {pending} pending, {imported} imported, "
                    f"{stored} in IMAP")
        return (pending, stored - imported)

    def heal_and_check(self, expect_settled=None, extra=""):
        """The healthy run: exit 0, everything in IMAP exactly once, POP3
        empty (keep = false).  expect_settled=(n, found) checks the
        "settled" log line (found: a number or a range lo..hi); a list of
        such pairs accepts any of them (where timing decides whether a
        reply was read before the link failed)."""
        self.pp.heal()
        self.ip.heal()
        r = self.run([self.healthy_account()], "healthy.conf", extra=extra)
        fl.assert_rc(r, EX_OK, "healthy run after the fault")
        if expect_settled is not None:
            alts = expect_settled if isinstance(expect_settled, list) else [expect_settled]
            m = re.search(rf"{self.name}: settled (\d+) interrupted imports?: (\d+) already in",
                          r.stderr)
            got = (int(m.group(1)), int(m.group(2))) if m else None
            ok = got is not None and any(got[0] == n and (
                got[1] == found if isinstance(found, int) else found[0] <= got[1] <= found[1])
                for n, found in alts)
            want = " or ".join(
                f"{n} interrupted imports, "
                f"{found if isinstance(found, int) else '%d..%d' % found} of them already in IMAP"
                for n, found in alts)
            assert ok, (f"healthy run: expected to settle {want}; the log says "
                        f"{m.group(0) if m else 'nothing about settling'}")
        fl.check_exactly_once(self.t, self.raws,
                              fl.imap_bodies(self.dc, self.dst, self.mailbox),
                              fl.pop3_bodies(self.dc, self.src), self.keep, "healthy run")
        return r


def strip_caps(*caps):
    """s2c rules that hide capabilities (e.g. MULTIAPPEND, LITERAL+)."""
    return [Rule("s2c", rb" " + re.escape(c.encode()) + rb"(?=[ \]\r])", nth=0,
                 action="replace", data=b"", once=False) for c in caps]


def pop3_left(c):
    return len(fl.pop3_bodies(c.dc, c.src))


# ------------------------------------------------------------------ 1. POP3 cut mid-RETR
def test_pop3_cut_mid_retr(t):
    """The POP3 connection closes 500 bytes into the reply to the 40th RETR
    (batch 2, after batch 1 was appended and its DELEs sent): exit 75,
    nothing deleted (no QUIT), the 39 messages fetched whole in IMAP once
    (README: the messages fetched whole before it are imported); the
    healthy run imports the rest.

    Before the engine of v2: whole batches only, batch 1 (32)."""
    with Case(t) as c:
        c.pp.rules = [Rule("s2c", OCTETS, nth=40, offset=500, action="cut")]
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, "POP3 cut mid-RETR")
        assert c.pp.fired(), "the proxy never cut the connection"
        c.expect_error(r, c.name, r"pop3.*(clos|lost)", "POP3 cut mid-RETR")
        in_imap, on_pop = c.check_no_loss()
        assert pop3_left(c) == N, "messages were deleted although the session ended without QUIT"
        c.stored_of_fetched(in_imap, "POP3 cut mid-RETR")
        c.heal_and_check()


def test_pop3_cut_mid_big_message(t):
    """Cut 150 KB into a 200 KB message (spooled to a file) in batch 1,
    with a RST: nothing deleted, no partial copy; of the five messages
    before it, only ones that reached popbridge whole may be imported (the
    RST may take some it had not read yet), each once.

    Before the engine of v2: nothing imported (the batch was cut)."""
    with Case(t) as c:
        c.pp.rules = [Rule("s2c", OCTETS, nth=6, offset=150_000, action="cut", rst=True)]
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, "POP3 cut (RST) mid-RETR of a big message")
        in_imap, _ = c.check_no_loss()
        c.stored_of_fetched(in_imap, "POP3 cut (RST) mid-RETR", rst=True)
        assert 5 not in {n for (_, n), k in in_imap.items() if k}, \
            "the message that was cut is in IMAP"
        assert pop3_left(c) == N
        c.heal_and_check()


# ------------------------------------------------------------------ 2. IMAP cut mid-literal
def test_imap_cut_mid_append_literal(t):
    """The IMAP connection closes 20 KB into batch 2's MULTIAPPEND: Dovecot
    stores nothing of it; exit 75.  Batch 1 reached Dovecot whole, but its
    reply is read only after batch 2 is sent, so both batches' intents are
    open.  Whether Dovecot stored batch 1 depends on timing (it may still
    have been reading it when the connection went): the count is taken once
    Dovecot has ended the session, and must be batch 1 or nothing; the
    healthy run settles 64, finds exactly that and imports the rest once.
    (It expected 32 at once before, and failed with "0 in IMAP" when
    Dovecot was still committing batch 1, or had dropped it.)"""
    with Case(t) as c:
        c.ip.rules = [Rule("c2s", rb"APPEND", nth=2, offset=20_000, action="cut")]
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, "IMAP cut mid-literal")
        c.expect_error(r, c.name, r"imap.*(clos|lost|sending)", "IMAP cut mid-literal")
        in_imap, _ = c.check_no_loss()
        j, appends, stored = c.stored_prefix(in_imap, "IMAP cut mid-literal")
        c.expect([len(a) for a in appends] == [32],
                 f"APPEND commands that reached Dovecot whole: {[len(a) for a in appends]} "
                 f"messages, expected batch 1 (32) alone")
        c.heal_and_check(expect_settled=c.settle_expected(stored))


def test_imap_cut_mid_literal_pipelined(t):
    """Without MULTIAPPEND (hidden by the proxy) popbridge pipelines one
    LITERAL+ APPEND a message; the cut lands in the 40th literal, while
    batch 2 is being sent and before batch 1's replies are read: the
    healthy run settles both batches, finds what Dovecot stored of 1..39
    and imports the rest, none twice."""
    with Case(t) as c:
        c.ip.rules = strip_caps("MULTIAPPEND") + [
            Rule("c2s", rb"APPEND", nth=40, offset=300, action="cut")]
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, "IMAP cut mid-literal (pipelined APPENDs)")
        c.expect_error(r, c.name, r"imap.*(clos|lost)", "IMAP cut mid-literal (pipelined APPENDs)")
        in_imap, _ = c.check_no_loss()
        # How many of 1..39 Dovecot had stored when the link dropped
        # depends on timing (it drops the APPENDs still in its input):
        # anywhere from none to all 39, always the first ones.
        j, appends, stored = c.stored_prefix(in_imap, "IMAP cut mid-literal (pipelined)")
        c.expect(len(appends) == 39, f"{len(appends)} APPENDs reached Dovecot whole, expected "
                                     f"39 (the 40th was cut)")
        c.heal_and_check(expect_settled=c.settle_expected(stored))


# ------------------------------------------------------------------ 3. after APPEND, before reply
def test_imap_cut_after_append_before_reply(t):
    """THE key case: batch 2's MULTIAPPEND reaches Dovecot and is stored,
    and the connection closes before its OK reaches popbridge (by then
    batch 3, 6 messages, was sent as well, and maybe stored).  The healthy
    run must settle batch 2 and 3 and find all that Dovecot stored, not
    import them twice."""
    with Case(t) as c:
        c.ip.rules = [Rule("s2c", APPEND_OK, nth=2, at="start",
                           action="cut")]
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, "IMAP cut before the APPEND reply")
        c.expect_error(r, c.name, r"imap.*(clos|lost)", "IMAP cut before the APPEND reply")
        assert c.ip.fired(), "the proxy never saw the second APPEND reply"
        in_imap, _ = c.check_no_loss()
        # Batch 2 was answered, so stored; batch 3 if it reached Dovecot
        # whole and Dovecot read it before the connection went.
        j, appends, stored = c.stored_prefix(in_imap, "IMAP cut before the APPEND reply")
        c.expect(j >= 2, f"Dovecot answered batch 2's APPEND, yet only {stored} in IMAP")
        c.heal_and_check(expect_settled=c.settle_expected(stored))


def test_imap_cut_before_reply_pipelined(t):
    """The same with pipelined LITERAL+ APPENDs (MULTIAPPEND hidden): the
    connection closes instead of the 40th OK.  All 32 APPENDs of batch 2
    and the 6 of batch 3 were sent; Dovecot stored 33..40 and perhaps more
    before it saw the close.  The healthy run settles the 38, finds those,
    imports the others, none twice."""
    with Case(t) as c:
        c.ip.rules = strip_caps("MULTIAPPEND") + [
            Rule("s2c", APPEND_OK, nth=40, at="start", action="cut")]
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, "IMAP cut before the 40th APPEND reply")
        c.expect_error(r, c.name, r"imap.*(clos|lost)", "IMAP cut before the 40th APPEND reply")
        in_imap, _ = c.check_no_loss()
        # Dovecot answered 40 APPENDs, so stored them; of the rest, those
        # it had read before it saw the connection go.
        j, appends, stored = c.stored_prefix(in_imap, "IMAP cut before the 40th APPEND reply")
        c.expect(stored >= 40, f"{stored} in IMAP, but Dovecot had answered 40 APPENDs")
        c.heal_and_check(expect_settled=c.settle_expected(stored))


def test_imap_cut_before_reply_sync_literals(t):
    """Neither MULTIAPPEND nor LITERAL+ (hidden): one APPEND at a time with
    synchronising literals.  The cut replaces the 40th OK: messages 33..40
    are stored, 41..70 never sent; batch 3's intents were recorded while
    batch 2 was being appended, so the healthy run settles 38: 8 found,
    30 to import again."""
    with Case(t) as c:
        c.ip.rules = strip_caps("MULTIAPPEND", "LITERAL+") + [
            Rule("s2c", APPEND_OK, nth=40, at="start", action="cut")]
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, "IMAP cut before the 40th APPEND reply (sync literals)")
        c.expect_error(r, c.name, r"imap.*(clos|lost)",
                       "IMAP cut before the 40th APPEND reply (sync literals)")
        in_imap, _ = c.check_no_loss()
        # One APPEND at a time: the 41st is never sent, so this count does
        # not depend on timing.
        j, appends, stored = c.stored_prefix(in_imap, "sync literals")
        c.expect(stored == 40 and len(appends) == 40,
                 f"{stored} in IMAP, {len(appends)} APPENDs sent whole, expected 40 and 40")
        c.heal_and_check(expect_settled=c.settle_expected(stored))


def test_literal_minus_batches_of_both_kinds(t):
    """A server with LITERAL- (RFC 7888) but neither LITERAL+ nor
    MULTIAPPEND (the proxy rewrites Dovecot's capabilities): a batch of
    small messages goes as pipelined APPENDs, a batch with a message over
    4 KiB one APPEND at a time, waiting for "+".  Batch 3 (small) is on the
    wire while batch 2 (with a big one) waits for its "+": the replies to
    batch 3 must be set aside, not taken for an unexpected reply.  Small
    messages here are under 4 KiB; message 33, the first of batch 2, is
    200 KB.  Exit 0, every message exactly once."""
    with Case(t, big=(32,), small=(600, 4000)) as c:
        c.ip.keep_bytes = 1 << 24       # the whole transcript, to find the literals
        c.ip.rules = strip_caps("MULTIAPPEND") + [
            Rule("s2c", rb" LITERAL\+(?=[ \]\r])", nth=0, action="replace",
                 data=b" LITERAL-", once=False)]
        r = c.fault_run()
        c.note_run(r, "LITERAL- run")
        fl.assert_rc(r, EX_OK, "LITERAL- only, batches of both kinds")
        sent = bytes(c.ip.sessions[-1].transcript["c2s"])
        assert b"LITERAL+" not in bytes(c.ip.sessions[-1].transcript["s2c"])[:2000]
        assert re.search(rb"\{\d+\}\r\n", sent), "no synchronising literal was sent"
        assert re.search(rb"\{\d+\+\}\r\n", sent), "no non-synchronising literal was sent"
        fl.check_exactly_once(t, c.raws, fl.imap_bodies(c.dc, c.dst, c.mailbox),
                              fl.pop3_bodies(c.dc, c.src), c.keep, "LITERAL- run")


# ------------------------------------------------------------------ 4. DELE .. QUIT
def test_pop3_cut_between_dele_and_quit(t):
    """Every DELE is sent and answered, then the connection closes instead
    of QUIT: the server deletes nothing.  The run says the deletions will
    be made next run; the next run deletes them all and imports nothing."""
    with Case(t) as c:
        c.pp.rules = [Rule("c2s", rb"^QUIT\r\n", at="start", action="cut")]
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, (EX_OK, EX_TEMPFAIL), "cut before QUIT")
        t.note(f"cut before QUIT: popbridge exited {r.rc}")
        sent = bytes(c.pp.sessions[0].transcript["c2s"])
        assert sent.count(b"DELE ") == N, f"{sent.count(b'DELE ')} DELEs sent, expected {N}"
        c.expect(re.search(rf"{c.name}: .*deletions will be made next run", r.stderr),
                 "no warning that the deletions are postponed to the next run")
        in_imap, _ = c.check_no_loss()
        assert pop3_left(c) == N, "the server deleted messages without QUIT"
        assert sum(in_imap.values()) == N
        r2 = c.heal_and_check()
        c.expect(fl.summary(r2.stderr, c.name) == (0, 0, 0, N),
                 f"next run: summary {fl.summary(r2.stderr, c.name)}, expected 0 new, "
                 f"0 imported, 0 failed, {N} deleted")


def test_pop3_cut_after_quit_before_reply(t):
    """QUIT reaches the server (which commits the deletions) and the
    connection closes before its +OK: the next run finds the messages gone
    and imports nothing again."""
    with Case(t) as c:
        c.pp.rules = [Rule("s2c", rb"^\+OK Logging out", at="start", action="cut")]
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, (EX_OK, EX_TEMPFAIL), "cut before the QUIT reply")
        t.note(f"cut before the QUIT reply: popbridge exited {r.rc}")
        c.check_no_loss()
        c.heal_and_check()


# ------------------------------------------------------------------ 5. stalls
def _stall_case(t, what, imap_rules=(), pop3_rules=(), expect_in_imap=None,
                expect_settled=None, expect_appends=None, pop3_fault=False):
    with Case(t) as c:
        c.ip.rules = list(imap_rules)
        c.pp.rules = list(pop3_rules)
        other = c.bystander()
        r = c.fault_run(extra="timeout = 5;\n", accounts=[c.faulty_account(), other])
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, what)
        assert r.seconds < 20, f"{what}: the run took {r.seconds:.1f} s with timeout = 5"
        c.expect_error(r, c.name, r"time|no answer for 5", what)
        c.check_others()
        in_imap, _ = c.check_no_loss()
        j, appends, stored = c.stored_prefix(in_imap, what)
        if pop3_fault:
            c.stored_of_fetched(in_imap, what)
        if expect_in_imap is not None:
            c.expect(stored == expect_in_imap,
                     f"{what}: {stored} in IMAP, expected {expect_in_imap}")
        if expect_appends is not None:
            c.expect([len(a) for a in appends] == expect_appends,
                     f"{what}: APPENDs that reached Dovecot whole: {[len(a) for a in appends]} "
                     f"messages, expected {expect_appends}")
        assert pop3_left(c) == N, f"{what}: messages were deleted"
        if expect_settled == "ledger":
            expect_settled = c.settle_expected(stored)
        c.heal_and_check(expect_settled=expect_settled)


def test_stalled_imap_greeting(t):
    """The IMAP server accepts and says nothing (the proxy holds every
    reply from the greeting on): exit 75 within ~15 s with timeout = 5; a
    second account in the same config imports."""
    _stall_case(t, "IMAP silent from the start",
                imap_rules=[Rule("s2c", None, offset=0, action="hold")], expect_in_imap=0)


def test_stalled_imap_after_append(t):
    """The IMAP server answers nothing from the first APPEND on; batch 1
    and batch 2, which is sent before batch 1's reply is awaited, reach it
    whole, and it stores them (unless, on a very slow machine, it had not
    read them when the connection went: then the first ones it had): exit
    75 after the timeout; the healthy run settles the 64 and finds what
    was stored."""
    _stall_case(t, "IMAP silent after the first APPEND",
                imap_rules=[Rule("c2s", rb"APPEND", nth=1, action="hold", hold="s2c")],
                expect_appends=[32, 32, 6], expect_settled="ledger")


def test_stalled_pop3_mid_message(t):
    """The POP3 server stops in the middle of message 10: exit 75 after the
    timeout, the nine messages fetched whole imported (README), nothing
    deleted; the other account imports.

    Before the engine of v2: nothing imported."""
    _stall_case(t, "POP3 silent mid-message",
                pop3_rules=[Rule("s2c", OCTETS, nth=10, offset=300, action="hold")],
                pop3_fault=True)


# ------------------------------------------------------------------ 6. refusals
def _user_fields(dc, user, fields):
    """Rewrite user's passwd-file line with userdb extra fields (per-user
    quota settings); Dovecot notices a changed file within a second."""
    home = dc.home_dir / user
    path = dc.passwd_dir / user
    extra = " ".join(f"userdb_{k}={v}" for k, v in fields.items())
    tmp = path.with_name("." + user + ".tmp")
    tmp.write_text(f"{user}:{{PLAIN}}{dc.users[user]}:{5000}:{5000}::{home}::{extra}\n")
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    time.sleep(1.1)


def test_overquota(t):
    """NO [OVERQUOTA] in batch 2 (a per-user quota of 150 KB): exit 75, a
    message naming the quota, and nothing deleted this run (not even batch
    1); with the quota raised the healthy run imports the rest once."""
    dc = t.dovecot(quota_storage="1G")
    with Case(t, dc=dc, big=()) as c:
        _user_fields(dc, c.dst, {"quota_rule": "*:storage=150K"})
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, "over quota")
        c.expect_error(r, c.name, r"OVERQUOTA|quota", "over quota")
        in_imap, _ = c.check_no_loss()
        c.expect(0 < sum(in_imap.values()) < N,
                 f"{sum(in_imap.values())} in IMAP")
        assert pop3_left(c) == N, "over quota, yet messages were deleted from POP3"
        _user_fields(dc, c.dst, {"quota_rule": "*:storage=100M"})
        c.heal_and_check()


def test_append_limit(t):
    """NO [LIMIT] (Dovecot's quota_max_mail_size, 100 KB for this user) for
    the two 200 KB messages: exit 65, they are reported and stay on POP3,
    the other 68 are imported and deleted; with the limit lifted the
    healthy run imports the two."""
    dc = t.dovecot(quota_storage="1G")
    with Case(t, dc=dc) as c:
        _user_fields(dc, c.dst, {"quota_max_mail_size": "100K"})
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_DATAERR, "messages over the size limit")
        c.expect_error(r, c.name, r"LIMIT|larger than", "messages over the size limit")
        in_imap, on_pop = c.check_no_loss()
        c.expect(sum(in_imap.values()) == N - len(BIG),
                 f"{sum(in_imap.values())} in IMAP")
        left = sorted(n for (_, n), k in on_pop.items() if k)
        c.expect(left == sorted(BIG),
                 f"left on POP3: {left}, expected the big ones {list(BIG)}")
        c.expect(fl.summary(r.stderr, c.name) == (N, N - 2, 2, N - 2),
                 f"summary {fl.summary(r.stderr, c.name)}")
        _user_fields(dc, c.dst, {"quota_rule": "*:storage=1G"})
        c.heal_and_check()


def test_trycreate_then_create(t):
    """NO [TRYCREATE]: the proxy sends batch 1's APPEND to a mailbox that
    does not exist; popbridge creates the target (it exists: fine) and
    appends again: exit 0, all once, nothing in the wrong place."""
    state = {"done": False}

    def misdirect(cmd, sess):
        if cmd.verb == "APPEND" and not state["done"]:
            state["done"] = True
            return cmd.data.replace(b'APPEND "Target"', b'APPEND "Target.gone"', 1)
        return None
    with Case(t, mailbox="Target", imap_commands=misdirect) as c:
        c.dc.imap(c.dst).create("Target")
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_OK, "APPEND answered NO [TRYCREATE]")
        replies = bytes(c.ip.sessions[0].transcript["s2c"])
        assert b"[TRYCREATE]" in replies, "Dovecot never answered TRYCREATE"
        sent = b"\n".join(x.line for x in c.ip.sessions[0].commands)
        assert b'CREATE "Target"' in sent, "popbridge did not CREATE the mailbox"
        c.check_no_loss()
        c.heal_and_check()


def test_target_deleted_between_runs(t):
    """Batch 2 is stored but its reply lost (pending intents), then the
    user deletes the target mailbox (and the copies with it).  The next run
    creates the mailbox and imports the pending messages, since they are
    no longer there; batch 1, deleted by the user, is not imported again."""
    with Case(t, mailbox="Target") as c:
        c.ip.rules = [Rule("s2c", APPEND_OK, nth=2, at="start", action="cut")]
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, "cut before the APPEND reply")
        c.check_no_loss()
        im = c.dc.imap(c.dst)
        typ, _ = im.delete("Target")
        im.logout()
        assert typ == "OK"
        c.pp.heal()
        c.ip.heal()
        r = c.run([c.healthy_account()], "healthy.conf")
        fl.assert_rc(r, EX_OK, "run after the mailbox was deleted")
        assert re.search(r"created mailbox Target", r.stderr), "no 'created mailbox' line"
        rest = c.raws[32:]
        fl.check_exactly_once(t, rest, fl.imap_bodies(c.dc, c.dst, "Target"),
                              fl.pop3_bodies(c.dc, c.src), what="after the re-created mailbox")


def test_bad_for_one_message(t):
    """The server answers BAD to the APPEND of one message (the proxy turns
    that command into one Dovecot rejects as BAD, so nothing is stored).
    MULTIAPPEND fails as a whole; popbridge goes one by one: exit 65, that
    message reported and kept, the others imported and deleted."""
    marker = b"fault corpus message 17\r\n"

    def bad(cmd, sess):
        if cmd.verb == "APPEND" and any(marker in lit for lit in cmd.literals):
            return f"{cmd.tag} XBAD-from-faultproxy\r\n".encode()
        return None
    with Case(t, imap_commands=bad, big=()) as c:
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_DATAERR, "BAD for one message")
        c.expect_error(r, c.name, r"message 18\b.*(BAD|refused|unknown)", "BAD for one message")
        in_imap, on_pop = c.check_no_loss()
        c.expect(sum(in_imap.values()) == N - 1,
                 f"{sum(in_imap.values())} in IMAP after the run, expected {N - 1}")
        left = sorted(n for (_, n), k in on_pop.items() if k)
        c.expect(left == [17],
                 f"left on POP3: {left}, expected [17]")
        c.heal_and_check()


def test_bye_instead_of_append(t):
    """'* BYE' in the middle of the run: batch 2's APPEND never reaches the
    server, popbridge gets a BYE and a closed connection.  Exit 75 with the
    server's words; the healthy run imports batch 2 and 3 once.  Whether
    batch 1's OK came before the BYE is timing: if not, batch 1 is settled
    (found) with batch 2."""
    def bye(cmd, sess):
        if cmd.verb == "APPEND" and sum(1 for x in sess.commands if x.verb == "APPEND") == 2:
            sess.to_client(b"* BYE Server shutting down for maintenance\r\n")
            sess.cut()
            return b""
        return None
    with Case(t, imap_commands=bye) as c:
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, "BYE mid-run")
        c.expect_error(r, c.name, r"shutting down for maintenance|BYE|ended the session",
                        "BYE mid-run")
        in_imap, _ = c.check_no_loss()
        # Batch 1 reached Dovecot whole; whether it was stored before the
        # connection went is timing, and whether popbridge read its OK too.
        j, appends, stored = c.stored_prefix(in_imap, "BYE mid-run")
        c.expect([len(a) for a in appends] == [32],
                 f"APPENDs that reached Dovecot whole: {[len(a) for a in appends]} messages, "
                 f"expected batch 1 (32) alone")
        if c.replies_forwarded():
            # Dovecot answered batch 1 (so stored it) and popbridge got the
            # answer, read or not before the BYE.
            c.expect(stored == 32, f"batch 1 was answered OK, yet {stored} in IMAP")
        c.heal_and_check(expect_settled=c.settle_expected(stored))


def test_bye_after_append_stored(t):
    """'* BYE' instead of the OK of batch 2's MULTIAPPEND (which Dovecot
    stored): exit 75; the healthy run settles batch 2 as imported, and
    batch 3 (sent before batch 2's reply was read) as found or not."""
    with Case(t) as c:
        c.ip.rules = [Rule("s2c", APPEND_OK, nth=2, at="start", action="inject",
                           data=b"* BYE Autologged out\r\n", drop=True, then_cut=True)]
        r = c.fault_run()
        c.note_run(r, "fault run")
        c.expect_rc(r, EX_TEMPFAIL, "BYE instead of the APPEND reply")
        c.expect_error(r, c.name, r"Autologged out|BYE|ended the session|clos",
                        "BYE instead of the APPEND reply")
        in_imap, _ = c.check_no_loss()
        j, appends, stored = c.stored_prefix(in_imap, "BYE instead of the APPEND reply")
        c.expect(j >= 2, f"Dovecot answered batch 2's APPEND, yet only {stored} in IMAP")
        c.heal_and_check(expect_settled=c.settle_expected(stored))


# ------------------------------------------------------------------ 7. state_dir
def _mount_tmpfs(path, size):
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(path)], capture_output=True, text=True)
    return p.returncode == 0, p.stderr.strip()


def _umount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(path):
    """Fill the file system of path until it is full."""
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        block = b"\0" * 4096
        while True:
            try:
                os.write(fd, block)
            except OSError:
                break
        # The last few bytes of a block too.
        for n in (1024, 128, 1):
            try:
                while True:
                    os.write(fd, block[:n])
            except OSError:
                pass
    finally:
        os.close(fd)


def test_disk_full_during_run(t):
    """state_dir on a small tmpfs that fills up when batch 1's APPEND goes
    out (the 200 KB message of batch 2 can then not be spooled, and the
    ledger may not grow): exit 75 naming the cause; nothing lost or
    twice; once there is room again, the healthy run finishes the job."""
    sd = t.state_dir
    ok, err = _mount_tmpfs(sd, "2m")
    if not ok:
        t.note(f"SKIPPED: cannot mount a tmpfs here ({err})")
        return
    try:
        def fill(sess):
            _fill(sd)
        with Case(t) as c:
            c.ip.rules = [Rule("c2s", rb"APPEND", nth=1, at="start", action="call", fn=fill)]
            r = c.fault_run()
            c.note_run(r, "fault run")
            c.expect_rc(r, EX_TEMPFAIL, "disk full")
            c.expect_error(r, c.name, r"disk full|no space|full", "disk full")
            c.check_no_loss()
            os.unlink(sd / "filler")
            c.heal_and_check()
    finally:
        _umount(sd)


def test_disk_full_before_run(t):
    """A state_dir with no room at all: exit 75 before anything is
    imported or deleted."""
    sd = t.state_dir
    ok, err = _mount_tmpfs(sd, "1m")
    if not ok:
        t.note(f"SKIPPED: cannot mount a tmpfs here ({err})")
        return
    try:
        _fill(sd)
        with Case(t) as c:
            r = c.fault_run()
            c.note_run(r, "fault run")
            c.expect_rc(r, EX_TEMPFAIL, "no room in state_dir")
            c.expect_error(r, c.name, r"disk full|no space|full|ledger", "no room in state_dir")
            c.check_no_loss()
            assert pop3_left(c) == N and fl.imap_bodies(c.dc, c.dst) == []
            os.unlink(sd / "filler")
            c.heal_and_check()
    finally:
        _umount(sd)


def test_state_dir_read_only(t):
    """A read-only state_dir (a read-only bind mount): exit 75 naming it,
    nothing imported, nothing deleted."""
    sd = t.state_dir
    sd.mkdir(exist_ok=True)
    p = subprocess.run(["mount", "--bind", str(sd), str(sd)], capture_output=True, text=True)
    if p.returncode != 0:
        t.note(f"SKIPPED: cannot bind-mount here ({p.stderr.strip()})")
        return
    try:
        p = subprocess.run(["mount", "-o", "remount,bind,ro", str(sd)], capture_output=True,
                           text=True)
        if p.returncode != 0:
            t.note(f"SKIPPED: cannot remount read-only here ({p.stderr.strip()})")
            return
        with Case(t) as c:
            r = c.fault_run()
            c.note_run(r, "fault run")
            c.expect_rc(r, EX_TEMPFAIL, "read-only state_dir")
            c.expect_error(r, c.name, r"read-only", "read-only state_dir")
            c.check_no_loss()
            assert pop3_left(c) == N and fl.imap_bodies(c.dc, c.dst) == []
            _umount(sd)
            c.heal_and_check()
    finally:
        _umount(sd)


def _immutable_works(sd):
    """Does chattr +i stop writes to an open file under sd?  (On ext4 it
    does; on tmpfs it does not stop writes through an open descriptor.)"""
    probe = sd / "probe"
    probe.write_bytes(b"x")
    fd = os.open(probe, os.O_WRONLY | os.O_APPEND)
    p = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True)
    blocked = False
    if p.returncode == 0:
        try:
            os.write(fd, b"y")
        except OSError:
            blocked = True
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
    os.close(fd)
    probe.unlink()
    return blocked, p.stderr.strip() or "writes through an open descriptor still succeed"


def _read_only_mid_run(t, with_shm):
    sd = t.state_dir
    sd.mkdir(exist_ok=True)
    ok, why = _immutable_works(sd)
    if not ok:
        t.note(f"SKIPPED: the immutable flag does not stop writes on {sd} ({why})")
        return
    frozen = []

    def freeze(sess):
        for f in sorted(sd.iterdir()) + [sd]:
            if f.name.endswith("-shm") and not with_shm:
                continue
            if subprocess.run(["chattr", "+i", str(f)], capture_output=True).returncode == 0:
                frozen.append(f)
    try:
        with Case(t) as c:
            c.ip.rules = [Rule("c2s", rb"APPEND", nth=2, at="start", action="call", fn=freeze)]
            r = c.fault_run()
            c.note_run(r, "fault run")
            assert frozen, "nothing was made immutable"
            c.expect_rc(r, EX_TEMPFAIL, "state_dir read-only mid-run")
            c.expect_error(r, c.name, r"ledger|state|temporary file|permitted|read-only",
                           "state_dir read-only mid-run")
            c.check_no_loss()
            for f in frozen:
                subprocess.run(["chattr", "-i", str(f)], capture_output=True)
            frozen.clear()
            c.heal_and_check()
    finally:
        for f in frozen:
            subprocess.run(["chattr", "-i", str(f)], capture_output=True)


def test_state_dir_read_only_mid_run(t):
    """The ledger becomes unwritable in the middle of the run (chattr +i on
    state_dir, the ledger and its WAL when batch 2's APPEND goes out; root
    ignores file modes, not the immutable flag): exit 75 with the cause;
    nothing lost or twice; once writable again, the healthy run settles
    and finishes."""
    _read_only_mid_run(t, with_shm=False)


def test_state_dir_read_only_mid_run_shm(t):
    """The same with the WAL index (the -shm file SQLite maps into memory)
    unwritable too, as on a file system remounted read-only after an
    error: a clear exit 75 is expected, not a crash."""
    _read_only_mid_run(t, with_shm=True)


# ------------------------------------------------------------------ 8. kill -9
def test_kill9_short_loop(t):
    """kill -9 at moments within the measured import, each followed at
    once by the next run (a short loop of harness.InterruptLoop; test_crash
    has the long one, `make stress` 500 rounds): at least 8 kills, half of
    them mid-work, then, once Dovecot has ended every session, a healthy
    run: nothing lost, nothing twice."""
    kills = int(os.environ.get("POPBRIDGE_FAULT_KILLS", "8"))
    dc = t.dovecot()
    loop = InterruptLoop(t, dc, signal.SIGKILL, name="kill9")
    loop.calibrate()
    while (len(loop.kills) < kills or loop.mid() < (kills + 1) // 2) \
            and loop.rounds < 3 * kills + 10:
        loop.round()
    t.note(loop.summary())
    res = loop.finish()
    t.note(f"lost {res['lost']}, duplicated {res['dup']}, changed {res['changed']}")
    assert not loop.session_waits, "; ".join(loop.session_waits)
    assert_exactly_once(loop.raws, res["msgs"], "after the kill loop")
    assert res["final"].rc == 0, f"final run exited {res['final'].rc}"
    assert res["pop3_left"] == 0, f"{res['pop3_left']} messages left on POP3"
    assert not loop.bad_exits, "unkilled runs failed: " + " | ".join(loop.bad_exits[:3])
    assert loop.mid() >= (kills + 1) // 2, \
        f"only {loop.mid()} kills landed mid-work; {loop.summary()}"
