"""Crash safety: popbridge killed with SIGKILL at random moments loses and
duplicates nothing."""

import os
import random
import time

from harness import assert_exactly_once, small_message

TOTAL = 500
MIN_KILLS = 20
MAX_ROUNDS = 120


def test_kill9_loop_exactly_once(t):
    seed = int(os.environ.get("POPBRIDGE_TEST_SEED", "20240917"))
    rng = random.Random(seed)
    t.note(f"random seed {seed} (set POPBRIDGE_TEST_SEED to replay another)")
    dc = t.dovecot()
    src, dst = t.user(dc, "s"), t.user(dc, "d")
    raws = [small_message(i, rng, t.name) for i in range(TOTAL)]
    cfg = t.config([dc.account("crash", src, dst, keep=False)])

    # Mail is delivered in batches between runs so that every run has work
    # to do when it is killed.  A run that finishes before its kill makes
    # the next batch bigger and the next wait shorter (still 0.05..1.0 s).
    pending = list(raws)
    batch, high = 25, 1.0
    kills = finished = rounds = mid_work = 0
    delivered = in_inbox = 0
    bad_exits = []
    while kills < MIN_KILLS and rounds < MAX_ROUNDS:
        rounds += 1
        for raw in pending[:batch]:
            dc.deliver(src, raw)
        delivered += len(pending[:batch])
        pending = pending[batch:]
        p = t.popen("-c", cfg, "run", stderr_path=t.tmp / "kill-run.stderr")
        time.sleep(rng.uniform(0.05, high))
        if p.poll() is None:
            p.kill()
            p.wait()
            kills += 1
            # Did this kill land while mail was being moved?
            now_in = dc.imap_count(dst)
            if in_inbox < now_in < delivered:
                mid_work += 1
            in_inbox = now_in
        else:
            finished += 1
            if p.returncode != 0:
                err = (t.tmp / "kill-run.stderr").read_text(errors="replace")
                bad_exits.append(f"round {rounds}: exit {p.returncode}: {err[-500:]}")
            batch = min(batch * 2, 200)
            high = max(0.06, high * 0.7)
    for raw in pending:
        dc.deliver(src, raw)
    t.note(f"{kills} SIGKILLs ({mid_work} after some but before all of the waiting mail "
           f"was imported), {finished} runs finished by themselves, {rounds} rounds")

    r = t.bridge("-c", cfg, "run", timeout=300)
    assert not bad_exits, "runs after a kill failed: " + " | ".join(bad_exits[:3])
    assert r.rc == 0, f"final run exited {r.rc}"
    assert_exactly_once(raws, dc.imap_messages(dst))
    assert dc.pop3_count(src) == 0, "keep = false but messages are left on POP3"
    assert kills >= MIN_KILLS, (f"only {kills} runs could be killed while working "
                                f"({finished} finished before their kill)")
