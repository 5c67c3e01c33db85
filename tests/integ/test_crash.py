"""Crash safety: popbridge killed with SIGKILL at random moments, and run
again at once, loses and duplicates nothing."""

import os
import signal

from harness import CpuLoad, InterruptLoop, assert_exactly_once

MIN_MID = int(os.environ.get("POPBRIDGE_CRASH_MID", "20"))


def test_kill9_loop_exactly_once(t):
    """kill -9 while mail is being moved, then at once the next run (which
    is what exposes an APPEND that Dovecot commits after the kill, once the
    next run has already looked for it), again and again; at the end one
    healthy run.  Every message must be in IMAP exactly once, none left on
    POP3 (keep = false).

    The kill moments are chosen within the working time measured on this
    machine, now (harness.InterruptLoop: an unkilled run is timed while the
    IMAP maildir is watched; a fast machine gets more mail per round).
    Where each kill landed is measured (the maildir count against the mail
    waiting), and the loop goes on until MIN_MID kills (20) landed
    mid-work, some but not all of the waiting mail imported: half with the
    machine quiet, half with two CPU-bound processes beside it (this test's
    own, killed by PID at the end).  Runs are bounded in number, not in
    time, so a slow machine takes longer rather than failing.  Before the
    verifying run Dovecot must have ended every IMAP session of the killed
    runs, so that every late commit is in the mailbox for it to see.

    Before the fix: a kill mid-APPEND was followed by duplicates (the next
    run re-imported what Dovecot committed after it had looked), e.g.
    "29 duplicated" on a busy machine; on a quiet fast machine the old loop
    had most runs finish before their kill."""
    dc = t.dovecot()
    loop = InterruptLoop(t, dc, signal.SIGKILL, name="crash")
    t.note(f"random seed {loop.seed} (set POPBRIDGE_TEST_SEED to replay another)")
    load = CpuLoad(2)
    quiet_goal = (MIN_MID + 1) // 2
    try:
        loop.calibrate()
        t.note(f"calibrated (quiet): {loop.cal['n']} messages, first commit after "
               f"{loop.cal['first']:.2f} s, last after {loop.cal['last']:.2f} s, run "
               f"{loop.cal['end']:.2f} s")
        rounds = 0
        while loop.mid(False) < quiet_goal and rounds < 3 * quiet_goal + 10:
            loop.round()
            rounds += 1
        load.start()
        loop.loaded = True
        loop.calibrate()
        t.note(f"calibrated (two CPU-bound processes beside it): {loop.cal['n']} messages, "
               f"first commit after {loop.cal['first']:.2f} s, last after "
               f"{loop.cal['last']:.2f} s, run {loop.cal['end']:.2f} s")
        rounds = 0
        loaded_goal = MIN_MID - loop.mid(False)
        while loop.mid(True) < loaded_goal and rounds < 3 * loaded_goal + 10:
            loop.round()
            rounds += 1
    finally:
        load.stop()
        t.note(loop.summary())
    res = loop.finish()
    t.note(f"verdict: {res['dup']} duplicated, {res['lost']} lost, {res['missing']} not in "
           f"IMAP, {res['changed']} changed, {res['pop3_left']} left on POP3")
    assert not loop.session_waits, "; ".join(loop.session_waits)
    assert_exactly_once(loop.raws, res["msgs"])
    assert res["final"].rc == 0, f"final run exited {res['final'].rc}"
    assert res["pop3_left"] == 0, \
        f"keep = false but {res['pop3_left']} messages are left on POP3"
    assert not loop.bad_exits, "unkilled runs failed: " + " | ".join(loop.bad_exits[:3])
    assert loop.mid() >= MIN_MID, (
        f"only {loop.mid()} of {len(loop.kills)} kills landed mid-work (wanted {MIN_MID}); "
        f"{loop.summary()}")
    assert loop.mid(True) >= 1, "no kill landed mid-work while the machine was loaded"
