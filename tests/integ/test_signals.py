"""Signals: `popbridge run` and `popbridge migrate` asked to stop.

What is specified: on SIGTERM, SIGINT or SIGHUP `run` and `migrate` stop
after the batch in flight, record it, send QUIT and exit by themselves --
exit 75 when work was left undone, with a log line saying it is stopping;
a second signal ends the process at once (still safely: the next run
settles what it left).  Either way the next run, started at once, leaves
every message in IMAP exactly once.

Every test here measures where its signal landed rather than assuming it:
the signal goes out once Dovecot has committed the first messages of the
run (seen in the maildir); a run that finished before that gets more mail
and is tried again.  Before the verdict Dovecot must have ended every IMAP
session of the user (harness.Dovecot.wait_sessions_ended), so that an
APPEND committed after its client died is counted.
"""

import os
import signal
import subprocess
import time

from harness import (IN_FLIGHT_MAX, InterruptLoop, assert_exactly_once, census,
                     default_signal_actions, padded_message, popbridge_path,
                     small_message)
from migratelib import Migration, _clean_env

TOTAL = 400                 # messages of a single-signal run (keep = false)
STOP_BOUND = 120.0          # a hang, not a speed limit: a batch takes well under 1 s
EX_TEMPFAIL = 75


class Subject:
    """A POP3 and an IMAP user on the private Dovecot and the popbridge
    command moving mail between them: `run` with a config (keep = false,
    INBOX) or `migrate --delete` into Archive."""

    def __init__(self, t, kind):
        import random
        self.t, self.kind = t, kind
        self.dc = t.dovecot()
        self.rng = random.Random(int(os.environ.get("POPBRIDGE_TEST_SEED", "20241204")))
        self.raws = []
        self.n = 0
        if kind == "run":
            self.src, self.dst = t.user(self.dc, "s"), t.user(self.dc, "d")
            self.mailbox = "INBOX"
            self.cfg = t.config([self.dc.account("sig", self.src, self.dst, keep=False)])
        else:
            self.m = Migration(t, dc=self.dc)
            self.src, self.dst = self.m.src, self.m.dst
            self.mailbox = "Archive"

    def deliver(self, n):
        for _ in range(n):
            i = len(self.raws)
            raw = small_message(i, self.rng, self.t.name)
            if self.rng.random() < 0.05:
                raw = padded_message(raw, i, self.rng.randrange(20_000, 120_000))
            self.raws.append(raw)
            self.dc.deliver(self.src, raw)

    def count(self):
        return self.dc.stored_count(self.dst, self.mailbox)

    def start(self):
        """Start the command with the signals at their default actions
        (not ignored because the tests run in the background); returns
        (Popen, stderr path)."""
        self.n += 1
        path = self.t.tmp / f"signalled-{self.n}.stderr"
        if self.kind == "run":
            return self.t.popen("-c", self.cfg, "run", stderr_path=path,
                                default_signals=True), path
        # As migratelib.Running starts it (its own session, private state
        # and passwords in the environment), with the signals reset.
        with open(path, "wb") as err:
            return subprocess.Popen(
                [popbridge_path(), *self.m.args("--delete", mailbox=self.mailbox)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                cwd=self.t.tmp, env=_clean_env(self.m.env()), start_new_session=True,
                preexec_fn=default_signal_actions), path

    def rerun(self):
        if self.kind == "run":
            return self.t.bridge("-c", self.cfg, "run")
        return self.m.run("--delete", mailbox=self.mailbox)

    def messages(self):
        return self.dc.imap_messages(self.dst, self.mailbox)

    def wait_sessions_ended(self):
        ok = self.dc.wait_sessions_ended(self.dst, 120, ("imap",))
        assert ok, ("Dovecot still has IMAP sessions of the target user 120 s after their "
                    f"client ended: {self.dc.open_sessions(self.dst, ('imap',))}")


def _start_mid_work(t, s, n=TOTAL, tries=5):
    """Deliver n messages, start the command and return it once Dovecot has
    committed its first messages (the run is under way, most of the mail
    still waiting).  A run that ends before that is let be; more mail is
    delivered (twice as much) and it is tried again.  Returns (Popen,
    stderr path, count before, messages waiting)."""
    for attempt in range(tries):
        s.deliver(n)
        before = s.count()
        waiting = s.dc.pop3_count(s.src)
        p, path = s.start()
        deadline = time.monotonic() + STOP_BOUND
        while p.poll() is None and s.count() <= before:
            if time.monotonic() > deadline:
                p.kill()
                p.wait()
                raise AssertionError(f"{s.kind} imported nothing in {STOP_BOUND:.0f} s (killed)")
            time.sleep(0.002)
        if p.poll() is None:
            return p, path, before, waiting
        t.note(f"attempt {attempt + 1}: the run of {waiting} messages ended (exit "
               f"{p.returncode}) before its first batch was seen; more mail")
        assert p.returncode == 0, f"an unsignalled run exited {p.returncode}"
        n *= 2
    raise AssertionError(f"{tries} runs ended before their first batch was seen in IMAP")


def _wait_exit(p, bound, what):
    try:
        return p.wait(bound)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"{what}: still running {bound:.0f} s later (killed)")


def _verdict(t, s, problems):
    """Wait for Dovecot to end the user's sessions, then: every message in
    IMAP exactly once, none left on POP3; `problems` (found earlier) are
    reported together with what is wrong here."""
    s.wait_sessions_ended()
    msgs = s.messages()
    pop = [b for _, b in s.dc.pop3_messages(s.src)]
    res = census(s.raws, [m["body"] for m in msgs], pop)
    t.note(f"verdict: {len(msgs)} in {s.mailbox} for {len(s.raws)} messages; "
           f"{res['dup']} duplicated, {res['lost']} lost, {res['missing']} missing, "
           f"{len(pop)} left on POP3")
    if res["dup"] or res["missing"] or res["changed"] or res["foreign"]:
        try:
            assert_exactly_once(s.raws, msgs, s.mailbox)
        except AssertionError as e:
            problems.append(str(e))
    if pop:
        problems.append(f"{len(pop)} messages left on POP3 (keep = false / --delete)")
    assert not problems, "; ".join(problems)


def _signal_once(t, kind, sig):
    """One signal mid-work: the command stops by itself (exit 75, "stopping"
    in its log), with part of the mail imported and none twice; the same
    command run again at once finishes the job."""
    s = Subject(t, kind)
    name = signal.Signals(sig).name
    p, path, before, waiting = _start_mid_work(t, s)
    at_signal = s.count()
    sent = time.monotonic()
    p.send_signal(sig)
    rc = _wait_exit(p, STOP_BOUND, f"{kind} after {name}")
    took = time.monotonic() - sent
    count = s.count()
    r = s.rerun()                                   # at once
    err = path.read_text(errors="replace")
    t.note(f"{kind}: {name} with {count - before} of {waiting} in IMAP; exit {rc} "
           f"{took:.2f} s later; the run after it exited {r.rc}")
    problems = []
    if rc == -sig:
        problems.append(f"{kind} was killed by {name} (returncode {rc}) instead of "
                        f"stopping after the batch in flight")
    elif count - before < waiting:
        if rc != EX_TEMPFAIL:
            problems.append(f"{kind} stopped with work left undone ({count - before} of "
                            f"{waiting}) but exited {rc}, not 75")
        if "stopping" not in err:
            problems.append(f"no log line saying it is stopping: {err[-300:]!r}")
    elif rc not in (0, EX_TEMPFAIL):
        problems.append(f"{kind} exited {rc} after {name}")
    if not before < count <= before + waiting:
        problems.append(f"{count - before} of {waiting} in IMAP after the stop "
                        f"(expected part of them, or all if it had finished)")
    left = before + waiting - at_signal
    if rc != -sig and left > IN_FLIGHT_MAX and count - before >= waiting:
        problems.append(f"{name} came with {left} messages still to import, more than can "
                        f"be in flight, yet {kind} imported them all (exit {rc}): the signal "
                        f"was not acted on")
    if r.rc != 0:
        problems.append(f"the run after the stop exited {r.rc}")
    _verdict(t, s, problems)


def test_run_sigterm_stops_after_batch(t):
    """`run` with a few hundred messages gets SIGTERM once mid-work.

    Before the fix: returncode -15 (SIGTERM's default action ends it on
    the spot, nothing recorded), and the immediate rerun may duplicate what
    Dovecot committed late."""
    _signal_once(t, "run", signal.SIGTERM)


def test_run_sigint_stops_after_batch(t):
    """The same with SIGINT (Ctrl-C).

    Before the fix: returncode -2."""
    _signal_once(t, "run", signal.SIGINT)


def test_run_sighup_stops_after_batch(t):
    """The same with SIGHUP (a closed terminal).

    Before the fix: returncode -1."""
    _signal_once(t, "run", signal.SIGHUP)


def test_migrate_sigterm_stops_after_batch(t):
    """`migrate --delete` gets SIGTERM once mid-work.

    Before the fix: this passed already (migrate caught SIGTERM like
    Ctrl-C); it guards the behaviour through the rewrite."""
    _signal_once(t, "migrate", signal.SIGTERM)


def test_migrate_sigint_stops_after_batch(t):
    """`migrate --delete` gets SIGINT once mid-work (Ctrl-C without a
    terminal).

    Before the fix: passed already, as for SIGTERM."""
    _signal_once(t, "migrate", signal.SIGINT)


def test_migrate_sighup_stops_after_batch(t):
    """`migrate --delete` gets SIGHUP once mid-work.

    Before the fix: returncode -1 (SIGHUP was not caught)."""
    _signal_once(t, "migrate", signal.SIGHUP)


def test_run_second_sigterm_ends_at_once(t):
    """Two SIGTERMs in a row mid-work: the second ends the process without
    waiting for the batch (returncode -15, or 75 if it had stopped by then);
    the next run, started at once, and after Dovecot has ended the killed
    run's sessions one more, leave every message exactly once.

    Before the fix: returncode -15 is what it gave anyway (the first
    SIGTERM killed it); the immediate rerun may duplicate a late commit."""
    s = Subject(t, "run")
    p, path, before, waiting = _start_mid_work(t, s)
    p.send_signal(signal.SIGTERM)
    time.sleep(0.005)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    rc = _wait_exit(p, STOP_BOUND, "run after two SIGTERMs")
    count = s.count()
    r = s.rerun()                                   # at once
    t.note(f"two SIGTERMs: exit {rc} with {count - before} of {waiting} in IMAP; "
           f"the run after it exited {r.rc}")
    problems = []
    if rc not in (-signal.SIGTERM, EX_TEMPFAIL):
        problems.append(f"after two SIGTERMs the run exited {rc} (expected -15 or 75)")
    if r.rc != 0:
        problems.append(f"the run after two SIGTERMs exited {r.rc}")
    s.wait_sessions_ended()
    final = s.rerun()
    if final.rc != 0:
        problems.append(f"the verifying run exited {final.rc}")
    _verdict(t, s, problems)


def test_sigterm_loop_exactly_once(t):
    """SIGTERM at random moments within the measured working time (the
    scheme of test_crash: harness.InterruptLoop), at least 12 times and
    until 6 landed mid-work; each time the next run starts as soon as the
    signalled one has exited.  Every signalled run must exit by itself (75
    with work left, "stopping" in its log); at the end, after Dovecot has
    ended every session, one verifying run, and every message exactly once.

    Before the fix: every signalled run was killed by the signal
    (returncode -15), and duplicates followed as after kill -9."""
    dc = t.dovecot()
    loop = InterruptLoop(t, dc, signal.SIGTERM, name="termloop")
    t.note(f"random seed {loop.seed}")
    loop.calibrate()
    while (len(loop.kills) < 12 or loop.mid() < 6) and loop.rounds < 40:
        loop.round()
    t.note(loop.summary())
    stops = [k["stop_s"] for k in loop.kills if k["rc"] is not None]
    if stops:
        t.note(f"signal to exit: {min(stops):.2f}..{max(stops):.2f} s")
    res = loop.finish()
    problems = []
    if loop.signal_deaths:
        problems.append(f"{len(loop.signal_deaths)} of {len(loop.kills)} signalled runs were "
                        f"killed by the signal: {loop.signal_deaths[0]}")
    problems += loop.hung[:2] + loop.term_problems[:3] + loop.session_waits
    if res["final"].rc != 0:
        problems.append(f"the verifying run exited {res['final'].rc}")
    if loop.bad_exits:
        problems.append("unsignalled runs failed: " + " | ".join(loop.bad_exits[:3]))
    try:
        assert_exactly_once(loop.raws, res["msgs"])
    except AssertionError as e:
        problems.append(str(e))
    if res["pop3_left"]:
        problems.append(f"{res['pop3_left']} messages left on POP3")
    if loop.mid() < 6:
        problems.append(f"only {loop.mid()} signals landed mid-work; {loop.summary()}")
    assert not problems, "; ".join(problems)
